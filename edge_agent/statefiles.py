"""State files (resumption handle, today's token count): readable by the agent's user only,
whether or not systemd made the directory."""

from __future__ import annotations

import os
from pathlib import Path


def write_private(path: Path, text: str) -> None:
    """Atomically writes `text` to `path`, mode 0600; a missing directory is made 0700."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        os.fchmod(fd, 0o600)  # an old temporary file keeps its mode otherwise
        file.write(text)
    temporary.replace(path)
