"""Where the API key comes from. The key itself never reaches a log, an error or `check`."""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from edge_agent.config_sections import CREDENTIAL_REFERENCE
from edge_agent.errors import UserError

CREDENTIAL_NAME = "gemini-api-key"
KEY_VARIABLES = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
HOW_TO_SET = (
    "set GEMINI_API_KEY (or the systemd credential gemini-api-key, or [live] token_command); "
    "`--emulator` runs without a key"
)


@dataclass(frozen=True)
class Credential:
    value: str = field(repr=False)
    source: str

    @property
    def is_ephemeral_token(self) -> bool:
        return self.value.startswith("auth_tokens/")


KeyProvider = Callable[[], Credential]  # called before every connect


def find_api_key(env: Mapping[str, str] | None = None) -> Credential | None:
    """Lookup order: systemd credential, GEMINI_API_KEY, GOOGLE_API_KEY."""
    env = os.environ if env is None else env
    value = systemd_credential(CREDENTIAL_NAME, env)
    if value:
        return Credential(value, f"systemd credential {CREDENTIAL_NAME}")
    for name in KEY_VARIABLES:
        value = env.get(name, "").strip()
        if value:
            return Credential(value, name)
    return None


def run_token_command(command: str, timeout_s: float = 30.0) -> Credential:
    """Runs `[live] token_command`; its first output line is the ephemeral token."""
    try:
        done = subprocess.run(
            shlex.split(command), capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UserError(f"[live] token_command failed: {exc}") from None
    token = done.stdout.strip().splitlines()[0] if done.stdout.strip() else ""
    if done.returncode != 0 or not token:
        detail = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "no output"
        raise UserError(f"[live] token_command exited {done.returncode}: {detail}")
    return Credential(token, "token_command")


class MissingCredential(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return (
            f"credential {self.name} not found: add the systemd credential {self.name} "
            f"(LoadCredential=) or set {variable_name(self.name)}"
        )


def variable_name(credential: str) -> str:
    return credential.upper().replace("-", "_").replace(".", "_")


def read_credential(name: str, env: Mapping[str, str] | None = None) -> str:
    """$CREDENTIALS_DIRECTORY/NAME, else the variable NAME upper-cased with - as _."""
    env = os.environ if env is None else env
    value = systemd_credential(name, env) or env.get(variable_name(name), "").strip()
    if not value:
        raise MissingCredential(name)
    return value


def systemd_credential(name: str, env: Mapping[str, str]) -> str:
    """$CREDENTIALS_DIRECTORY/NAME (LoadCredential=), or "" when there is none."""
    directory = env.get("CREDENTIALS_DIRECTORY")
    path = Path(directory) / name if directory else None
    if path is None or not path.is_file():
        return ""
    return path.read_text("utf-8").strip()


def resolve_references(value: str, env: Mapping[str, str] | None = None) -> str:
    """Each `credential:NAME` in a config value replaced by the secret (MissingCredential)."""
    return CREDENTIAL_REFERENCE.sub(lambda match: read_credential(match.group(1), env), value)
