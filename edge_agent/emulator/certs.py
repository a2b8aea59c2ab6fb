"""A throw-away certificate for 127.0.0.1/localhost; clients trust DIR/cert.pem."""

from __future__ import annotations

import ssl
from pathlib import Path

import trustme


def make_server_context(cert_dir: Path) -> ssl.SSLContext:
    authority = trustme.CA(organization_name="edge-agent emulator")
    server_cert = authority.issue_cert("127.0.0.1", "localhost", "::1")
    cert_dir.mkdir(parents=True, exist_ok=True)
    authority.cert_pem.write_to_path(str(cert_dir / "cert.pem"))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_cert.configure_cert(context)
    return context
