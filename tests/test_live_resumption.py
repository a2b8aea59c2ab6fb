"""The resumption handle on disk: kept per model, for as long as the service keeps it."""

from __future__ import annotations

import json
import time
from pathlib import Path

from edge_agent.live.resumption import HANDLE_FILE, HANDLE_VALID_S, HandleFile


def test_a_saved_handle_is_loaded_for_its_model_only(tmp_path: Path) -> None:
    handles = HandleFile(tmp_path)
    handles.save("handle-1", "model-a")
    assert (tmp_path / HANDLE_FILE).stat().st_mode & 0o077 == 0  # a private state file
    assert handles.load("model-a") == "handle-1"
    assert handles.load("model-b") is None
    handles.forget()
    assert handles.load("model-a") is None
    handles.forget()  # nothing to forget: no error


def test_an_old_or_unreadable_handle_is_not_loaded(tmp_path: Path) -> None:
    path = tmp_path / HANDLE_FILE
    old = time.time() - HANDLE_VALID_S - 1
    path.write_text(json.dumps({"handle": "h", "model": "m", "saved_at": old}))
    assert HandleFile(tmp_path).load("m") is None
    path.write_text("{not json")
    assert HandleFile(tmp_path).load("m") is None


def test_without_a_state_directory_nothing_is_kept() -> None:
    handles = HandleFile(None)
    handles.save("handle-1", "model-a")
    assert handles.path is None and handles.load("model-a") is None
    handles.forget()
