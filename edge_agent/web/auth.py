"""Who may use the page: anyone on the device when bound to loopback, otherwise only holders of
the token (a bearer header, or the cookie a one-time login sets). Standard library only."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from edge_agent.config import WebConfig
from edge_agent.errors import UserError

TOKEN_VARIABLE = "WEB_TOKEN"
MIN_TOKEN_CHARS = 16
COOKIE = "edge_agent_session"


def find_token(config: WebConfig, env: Mapping[str, str] | None = None) -> str | None:
    """The systemd credential `[web] credential`, else $WEB_TOKEN."""
    env = os.environ if env is None else env
    directory = env.get("CREDENTIALS_DIRECTORY")
    if directory:
        path = Path(directory) / config.credential
        if path.is_file():
            value = path.read_text("utf-8").strip()
            if value:
                return value
    return env.get(TOKEN_VARIABLE, "").strip() or None


def required_token(config: WebConfig, env: Mapping[str, str] | None = None) -> str | None:
    """None on loopback; off loopback the token, or exit 2 with what to do."""
    if config.loopback:
        return None
    token = find_token(config, env)
    how = (
        f"put a random token (e.g. `openssl rand -hex 16`) in the systemd credential "
        f'{config.credential} or {TOKEN_VARIABLE}, or set [web] address = "127.0.0.1"'
    )
    if token is None:
        raise UserError(f"[web] address {config.address} is not loopback and has no token: {how}")
    if len(token) < MIN_TOKEN_CHARS:
        raise UserError(f"[web] token is shorter than {MIN_TOKEN_CHARS} characters: {how}")
    return token


class Gate:
    """The checks every request passes; plain functions of header values."""

    def __init__(self, token: str | None) -> None:
        self.token = token
        self.cookie = (
            hmac.new(token.encode(), b"edge-agent page session", hashlib.sha256).hexdigest()
            if token is not None
            else ""
        )

    def authorized(self, authorization: str, cookie: str) -> bool:
        if self.token is None:
            return True
        bearer = authorization.removeprefix("Bearer ").strip()
        return (bool(bearer) and self.token_matches(bearer)) or (
            bool(cookie) and hmac.compare_digest(cookie.encode(), self.cookie.encode())
        )

    def token_matches(self, candidate: str) -> bool:
        return self.token is not None and hmac.compare_digest(
            candidate.encode(), self.token.encode()
        )

    def host_allowed(self, host: str) -> bool:
        """Loopback without a token: the Host must name the device itself (a page elsewhere
        cannot reach it by pointing its own DNS name at 127.0.0.1)."""
        if self.token is not None:
            return True
        name = urlsplit(f"//{host}").hostname or ""
        if name == "localhost":
            return True
        try:
            return ipaddress.ip_address(name).is_loopback
        except ValueError:
            return False

    @staticmethod
    def same_origin(origin: str, host: str) -> bool:
        """Commands from a browser must come from this page: no requests forged by other
        sites. Clients that send no Origin (curl, scripts) are not browsers and pass."""
        if not origin:
            return True
        parts = urlsplit(origin)
        return parts.scheme in ("http", "https") and parts.netloc == host
