"""A throw-away certificate for 127.0.0.1/localhost; clients trust DIR/cert.pem."""

from __future__ import annotations

import ssl
from pathlib import Path

import trustme


def make_server_context() -> tuple[trustme.CA, ssl.SSLContext]:
    authority = trustme.CA(organization_name="edge-agent emulator")
    server_cert = authority.issue_cert("127.0.0.1", "localhost", "::1")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_cert.configure_cert(context)
    return authority, context


def write_authority(authority: trustme.CA, cert_dir: Path) -> None:
    """Writes DIR/cert.pem, the CA clients trust (call once the port is held)."""
    cert_dir.mkdir(parents=True, exist_ok=True)
    authority.cert_pem.write_to_path(str(cert_dir / "cert.pem"))
