"""The session resumption handle on disk, so a restarted agent resumes its session."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

from edge_agent.statefiles import write_private

HANDLE_VALID_S = 2 * 3600  # the service keeps a handle 2 h after the session ends
HANDLE_FILE = "resumption.json"


class HandleFile:
    """`resumption.json` in the state directory; without one nothing is kept."""

    def __init__(self, state_dir: Path | None) -> None:
        self.path = state_dir / HANDLE_FILE if state_dir is not None else None

    def load(self, model: str) -> str | None:
        """The handle saved for `model` while the service still keeps it, else None."""
        if self.path is None:
            return None
        try:
            saved = json.loads(self.path.read_text("utf-8"))
        except (OSError, ValueError):
            return None
        fresh = time.time() - float(saved.get("saved_at", 0)) < HANDLE_VALID_S
        if fresh and saved.get("model") == model and saved.get("handle"):
            return str(saved["handle"])
        return None

    def save(self, handle: str, model: str) -> None:
        """Raises OSError when the file cannot be written."""
        if self.path is None:
            return
        record = {"handle": handle, "model": model, "saved_at": time.time()}
        write_private(self.path, json.dumps(record))

    def forget(self) -> None:
        if self.path is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()
