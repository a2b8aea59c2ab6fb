"""Keeps libasound and libjack chatter (printed at every PortAudio start) off the terminal."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
from typing import Any

_ALSA_HANDLER = ctypes.CFUNCTYPE(
    None, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p
)
_JACK_HANDLER = ctypes.CFUNCTYPE(None, ctypes.c_char_p)
_installed: list[Any] = []  # the C callbacks must stay referenced for the life of the process


def silence_audio_libraries() -> None:
    if _installed:
        return
    os.environ.setdefault("JACK_NO_START_SERVER", "1")
    alsa_noop = _ALSA_HANDLER(lambda *args: None)
    jack_noop = _JACK_HANDLER(lambda message: None)
    _installed.extend([alsa_noop, jack_noop])
    with contextlib.suppress(OSError):
        ctypes.cdll.LoadLibrary("libasound.so.2").snd_lib_error_set_handler(alsa_noop)
    jack_path = ctypes.util.find_library("jack")
    if jack_path:
        try:
            jack = ctypes.cdll.LoadLibrary(jack_path)
            jack.jack_set_error_function(jack_noop)
            jack.jack_set_info_function(jack_noop)
        except (OSError, AttributeError):
            pass
