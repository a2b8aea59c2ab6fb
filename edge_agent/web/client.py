"""`edge-agent announce`: a POST to the running daemon's page API. Standard library only (no
aiohttp, no event loop): a command that lives for one request."""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_agent.config import WebConfig
from edge_agent.errors import UserError
from edge_agent.web.auth import TOKEN_VARIABLE, find_token

MAX_ANNOUNCEMENT = 1000  # as the server's
TIMEOUT_S = 10.0
STORED = Path("/etc/edge-agent")  # where hardware/setup-pi.sh keeps the credentials (root only)
ANY_ADDRESS = {"0.0.0.0": "127.0.0.1", "::": "::1"}


@dataclass
class Answer:
    queued: bool
    reason: str = ""  # why not, when refused (409)


def page_url(config: WebConfig) -> str:
    """The page as a client on the device reaches it (a bind to every address: loopback)."""
    host = ANY_ADDRESS.get(config.address, config.address)
    return f"http://{f'[{host}]' if ':' in host else host}:{config.port}"


def client_token(config: WebConfig, stored: Path = STORED) -> str | None:
    """None on loopback; off it the page's token: the systemd credential, $WEB_TOKEN, else the
    file the installer stored (readable by root)."""
    if config.loopback:
        return None
    token = find_token(config)
    if token is None:
        try:
            token = (stored / config.credential).read_text("utf-8").strip() or None
        except OSError:
            token = None
    if token is None:
        raise UserError(
            f"[web] address {config.address} is not loopback and the page's token was not "
            f"found: set {TOKEN_VARIABLE}, or run as root to read {stored / config.credential}"
        )
    return token


def announce(config: WebConfig, text: str, with_chime: bool, stored: Path = STORED) -> Answer:
    """Queued, or refused with the daemon's reason; a UserError when it cannot be asked."""
    if not config.enabled:
        raise UserError("[web] enabled is false: announce goes through the page's API")
    if not text.strip() or len(text) > MAX_ANNOUNCEMENT:
        raise UserError(f"the text must have 1..{MAX_ANNOUNCEMENT} characters")
    url = page_url(config) + "/api/announce"
    headers = {"Content-Type": "application/json"}
    token = client_token(config, stored)
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    body = json.dumps({"text": text, "chime": with_chime}).encode()
    request = urllib.request.Request(url, body, headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            _read(response.read())
            return Answer(True)
    except urllib.error.HTTPError as refused:
        answer = _read(refused.read())
        reason = str(answer.get("reason") or answer.get("error") or refused.reason)
        if refused.code == 409:
            return Answer(False, reason)
        raise UserError(f"the daemon refused the announcement ({refused.code}): {reason}") from None
    except (OSError, http.client.HTTPException) as exc:  # refused, unreachable, timed out, not HTTP
        why = getattr(exc, "reason", exc)
        raise UserError(
            f"no daemon answers at {url} ({why}): is `edge-agent run` running with "
            f"[web] enabled = true and this config?"
        ) from None


def _read(data: bytes) -> dict[str, Any]:
    try:
        answer = json.loads(data)
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}
