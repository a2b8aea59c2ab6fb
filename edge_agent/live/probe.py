"""The start-up check of the key and the model: one bounded HTTPS GET, no Live session, no SDK.

Only a clear refusal counts: 400 API_KEY_INVALID, 401 or 403 (the key); 404, or a model that
cannot do bidiGenerateContent (the model). Anything else (timeouts, TLS or clock trouble before
NTP, 5xx, 429, other answers) means "unreachable": the agent starts anyway, offline.
"""

from __future__ import annotations

import functools
import json
import os
import re
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any, Literal

DEFAULT_ENDPOINT = "https://generativelanguage.googleapis.com"
PROBE_TIMEOUT_S = 5.0
MAX_BODY = 1 << 20
HASHED_CA = re.compile(r"[0-9a-f]{8}\.[0-9]+")  # a CA directory's links (openssl rehash)

Verdict = Literal["ok", "key_rejected", "model_rejected", "unreachable"]


@dataclass(frozen=True)
class ProbeResult:
    verdict: Verdict
    detail: str = ""

    @property
    def rejected(self) -> bool:
        return self.verdict in ("key_rejected", "model_rejected")


def model_url(endpoint: str, api_version: str, model: str) -> str:
    base = endpoint or DEFAULT_ENDPOINT
    if base.startswith("wss://"):
        base = "https://" + base[len("wss://") :]
    name = model if model.startswith("models/") else f"models/{model}"
    return f"{base.rstrip('/')}/{api_version}/{urllib.parse.quote(name)}"


def tls_context(ca_file: str = "") -> ssl.SSLContext:
    """One TLS context per CA source as it is on disk: the start-up check, the idle probe and
    every connection share it (google-genai made one per client). Without `ca_file`:
    $SSL_CERT_FILE / $SSL_CERT_DIR, as the SDK honours them; else the system's hashed CA
    directory, where OpenSSL reads a CA only when a chain needs it (a bundle is read whole:
    1.6 MB) and which the OS's updates keep current; else certifi's bundle, the SDK's default."""
    cafile = ca_file or os.environ.get("SSL_CERT_FILE") or ""
    capath = "" if ca_file else os.environ.get("SSL_CERT_DIR", "")
    if not cafile and not capath:
        capath = _system_ca_dir()
        cafile = "" if capath else _certifi_bundle()
    try:
        version = os.stat(cafile or capath).st_mtime_ns if cafile or capath else 0
    except OSError:
        version = -1  # ssl reports the missing file
    return _tls_context(cafile, capath, version)


@functools.lru_cache(maxsize=4)
def _tls_context(cafile: str, capath: str, version: int) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=cafile or None, capath=capath or None)


def _system_ca_dir() -> str:
    """The system's CA directory if it holds hashed CA links (c_rehash), else ""."""
    capath = ssl.get_default_verify_paths().capath or ""
    try:
        names = os.listdir(capath) if capath else []
    except OSError:
        return ""
    return capath if any(HASHED_CA.fullmatch(name) for name in names) else ""



def _certifi_bundle() -> str:
    try:
        import certifi  # google-genai's dependency
    except ImportError:
        return ""  # the system's CAs
    return str(certifi.where())


def probe_service(
    endpoint: str,
    api_version: str,
    key: str,
    model: str,
    ca_file: str = "",
    timeout_s: float = PROBE_TIMEOUT_S,
) -> ProbeResult:
    """GET {endpoint}/{version}/models/{model}, bounded to timeout_s in all."""
    request = urllib.request.Request(
        model_url(endpoint, api_version, model), headers={"x-goog-api-key": key}
    )
    context = tls_context(ca_file)
    deadline = time.monotonic() + timeout_s
    try:
        with urllib.request.urlopen(request, timeout=timeout_s, context=context) as response:
            body = response.read(MAX_BODY) if time.monotonic() < deadline else b""
            return _judge_model(body, model)
    except urllib.error.HTTPError as exc:
        return _judge_refusal(exc.code, _read(exc), model)
    except (OSError, ValueError) as exc:  # URLError, timeouts, TLS, a clock before NTP
        return ProbeResult("unreachable", _reason(exc))


def _read(exc: urllib.error.HTTPError) -> bytes:
    try:
        return exc.read(MAX_BODY)
    except OSError:
        return b""


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason or exc)[:200] or type(exc).__name__


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


def _judge_model(body: bytes, model: str) -> ProbeResult:
    data = _json(body)
    if not isinstance(data, dict):
        return ProbeResult("unreachable", "the service's answer was not the expected JSON")
    methods = data.get("supportedGenerationMethods")
    if isinstance(methods, list) and "bidiGenerateContent" not in methods:
        return ProbeResult("model_rejected", f"model {model!r} does not support the Live API")
    return ProbeResult("ok")


def _judge_refusal(status: int, body: bytes, model: str) -> ProbeResult:
    error = _json(body)
    error = error.get("error") if isinstance(error, dict) else None
    message = str(error.get("message", ""))[:200] if isinstance(error, dict) else ""
    key_invalid = status == 400 and b"API_KEY_INVALID" in body
    if status in (401, 403) or key_invalid:
        return ProbeResult("key_rejected", message or f"HTTP {status}")
    if status == 404:
        return ProbeResult("model_rejected", message or f"model {model!r} not found")
    return ProbeResult("unreachable", f"HTTP {status} {message}".strip())
