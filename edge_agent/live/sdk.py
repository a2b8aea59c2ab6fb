"""google-genai, imported once and off the event loop (live/wire.py is what imports it)."""

from __future__ import annotations

import asyncio
import sys
import time
from types import ModuleType

_loaded: list[ModuleType] = []  # live/wire.py once imported: no import machinery per message
_announced: list[bool] = []


def loaded_wire() -> ModuleType:
    """live/wire.py, imported on the first call (on the caller's thread)."""
    if not _loaded:
        from edge_agent.live import wire

        _loaded.append(wire)
    return _loaded[0]


async def load_wire(hide_aiohttp: bool) -> float | None:
    """Imports live/wire.py and google-genai in a worker thread. Returns the seconds it took
    to the first caller that sees it done, None to any other (and once it is loaded)."""
    if _loaded:
        return None
    started = time.monotonic()
    await asyncio.to_thread(_import_wire, hide_aiohttp)
    if _announced:  # on the loop: said once, whoever asked first
        return None
    _announced.append(True)
    return time.monotonic() - started


def _import_wire(hide_aiohttp: bool) -> None:
    """google-genai imports aiohttp whenever it is installed (for the emulator and the page) and
    a Live session never uses it: hidden, the SDK takes its own no-aiohttp path and the agent
    stays 6 MB smaller. Never hidden while the page (which needs it) may be importing it."""
    if not hide_aiohttp or "aiohttp" in sys.modules:
        loaded_wire()
        return
    sys.modules["aiohttp"] = None  # type: ignore[assignment]  # import aiohttp -> ImportError
    try:
        loaded_wire()
    finally:
        if sys.modules.get("aiohttp", "") is None:
            del sys.modules["aiohttp"]
