"""PortAudio device enumeration and selection by name substring, index or "default"."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from edge_agent.audio.quiet import silence_audio_libraries

log = logging.getLogger(__name__)

Direction = Literal["input", "output"]


class DeviceNotFound(Exception):
    pass


@dataclass(frozen=True)
class AudioDevice:
    index: int
    name: str
    inputs: int
    outputs: int
    default_rate: int
    host_api: str

    def channels(self, direction: Direction) -> int:
        return self.inputs if direction == "input" else self.outputs


def open_portaudio() -> Any:
    """A PyAudio instance with the ALSA/JACK start-up noise silenced."""
    silence_audio_libraries()
    import pyaudio

    return pyaudio.PyAudio()


def list_devices(pa: Any) -> list[AudioDevice]:
    devices = []
    for index in range(pa.get_device_count()):
        info = pa.get_device_info_by_index(index)
        api = pa.get_host_api_info_by_index(info["hostApi"])["name"]
        devices.append(
            AudioDevice(
                index=index,
                name=str(info["name"]),
                inputs=int(info["maxInputChannels"]),
                outputs=int(info["maxOutputChannels"]),
                default_rate=int(info["defaultSampleRate"]),
                host_api=str(api),
            )
        )
    return devices


def default_device_index(pa: Any, direction: Direction) -> int | None:
    try:
        info = (
            pa.get_default_input_device_info()
            if direction == "input"
            else pa.get_default_output_device_info()
        )
    except OSError:
        return None
    return int(info["index"])


def select_device(
    devices: list[AudioDevice], spec: str, direction: Direction, default_index: int | None
) -> AudioDevice:
    """`spec` is "default", an index, or a case-insensitive substring of the device name."""
    usable = [d for d in devices if d.channels(direction) > 0]
    spec = spec.strip()
    if spec.lower() == "default":
        chosen = [d for d in usable if d.index == default_index] or [
            d for d in usable if d.name.lower() == "default"
        ]
    elif spec.isdigit():
        chosen = [d for d in usable if d.index == int(spec)]
    else:
        exact = [d for d in usable if d.name.lower() == spec.lower()]
        chosen = exact or [d for d in usable if spec.lower() in d.name.lower()]
    if not chosen:
        names = ", ".join(f"{d.index}: {d.name}" for d in usable) or "none"
        raise DeviceNotFound(
            f"no audio {direction} device matches {spec!r} (available: {names}); "
            "see `edge-agent devices`"
        )
    return chosen[0]


def preferred_rate(
    pa: Any, device: AudioDevice, direction: Direction, model_rate: int, channels: int
) -> int:
    """The model's rate if the device takes it (with `channels`, 0 = mono or stereo), else its
    default rate, which soxr converts."""
    import pyaudio

    for count in (channels,) if channels else (1, 2):
        try:
            pa.is_format_supported(
                model_rate,
                **{
                    f"{direction}_device": device.index,
                    f"{direction}_channels": count,
                    f"{direction}_format": pyaudio.paInt16,
                },
            )
            return model_rate
        except ValueError:
            continue
    return device.default_rate


async def keep_open(
    name: str,
    is_healthy: Callable[[], bool],
    reopen: Callable[[], None],
    check_every_s: float = 0.5,
    max_backoff_s: float = 30.0,
) -> None:
    """Re-opens a device that stopped (USB unplugged, xrun storm) with capped backoff.

    `reopen` closes what is left, re-scans PortAudio and opens again; it runs off the loop.
    """
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(check_every_s)
        if is_healthy():
            continue
        log.warning("%s stopped; re-opening", name)
        backoff = 1.0
        while True:
            try:
                await loop.run_in_executor(None, reopen)
                log.info("%s is back", name)
                break
            except (DeviceNotFound, OSError) as exc:
                log.warning("%s unavailable (%s); retrying in %.0f s", name, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, max_backoff_s)


def drop_queued(stream: Any) -> bool:
    """Drops what a running blocking output stream still holds, and runs it on, empty
    (Pa_AbortStream, Pa_StartStream). PyAudio's Stream has no abort, so this calls its extension
    module with the stream's handle; False, and nothing dropped, if PyAudio changes that."""
    try:
        from pyaudio import _portaudio

        handle = stream._stream
        abort, start = _portaudio.abort_stream, _portaudio.start_stream
    except (ImportError, AttributeError):
        return False
    abort(handle)
    start(handle)
    return True


STALLED_AFTER_S = 1.0  # an active stream without a callback for this long is re-opened
_pinned = threading.local()


def keep_thread_state() -> None:
    """Called first in every PortAudio callback. PyAudio wraps each callback in
    PyGILState_Ensure/Release on PortAudio's own thread, so Python creates and destroys a thread
    state per callback; on 3.11 that is an mmap and a munmap, and the munmap's TLB shootdown
    interrupts every core (a third of the daemon's CPU on the bench). One Ensure that is never
    released keeps the state for the thread's life; a few KB stay behind when the stream closes."""
    if not getattr(_pinned, "done", False):
        ctypes.pythonapi.PyGILState_Ensure()
        _pinned.done = True


class PortAudioStream(ABC):
    """One PortAudio stream that is re-opened (after a re-scan) when it stops or disappears.

    Subclasses open it in `_open_stream` and call `_callback_began` first in their callback."""

    def __init__(self, name: str, device_spec: str) -> None:
        self.name = name
        self.device_spec = device_spec
        self.device_name = ""
        self.last_callback = 0.0
        self._pa: Any = None
        self._stream: Any = None
        self._supervisor: asyncio.Task[None] | None = None

    @abstractmethod
    def _open_stream(self) -> None:
        """Opens the stream on a freshly scanned device (see _find)."""

    def _find(self, direction: Direction) -> AudioDevice:
        """A fresh PortAudio instance (a re-scan) and the configured device in it."""
        self._pa = open_portaudio()
        default = default_device_index(self._pa, direction)
        return select_device(list_devices(self._pa), self.device_spec, direction, default)

    def _open_on(
        self, direction: Direction, parameters: Callable[[AudioDevice], dict[str, Any]]
    ) -> AudioDevice:
        """Scans, opens an int16 stream on the configured device with `parameters(device)`
        (rate, channels, block, callback), and cleans up if that fails."""
        import pyaudio

        try:
            chosen = self._find(direction)
            device_key = f"{direction}_device_index"
            self._stream = self._pa.open(
                format=pyaudio.paInt16,
                **{direction: True, device_key: chosen.index},
                **parameters(chosen),
            )
        except BaseException:
            self._terminate()
            raise
        self.device_name = chosen.name
        self.last_callback = time.monotonic()
        return chosen

    def _callback_began(self) -> None:
        keep_thread_state()
        self.last_callback = time.monotonic()

    def _supervise(self) -> None:
        self._supervisor = asyncio.create_task(
            keep_open(self.name, self._stream_active, self._reopen)
        )

    def _stream_active(self) -> bool:
        """Running and calling back. A stream can stay active with its thread spinning and no
        callbacks (seen with PortAudio's ALSA thread after an overrun): re-open that too."""
        return (
            self._stream is not None
            and bool(self._stream.is_active())
            and time.monotonic() - self.last_callback < STALLED_AFTER_S
        )

    def _reopen(self) -> None:
        self._terminate()
        self._open_stream()

    def alive(self) -> bool:
        """The callback ran recently (the watchdog's view of the audio thread)."""
        return self._stream is not None and time.monotonic() - self.last_callback < 2.0

    def _terminate(self) -> None:
        if self._stream is not None:
            with contextlib.suppress(OSError):
                self._stream.stop_stream()
                self._stream.close()
            self._stream = None
        if self._pa is not None:
            self._pa.terminate()
            self._pa = None

    def _stop_supervising(self) -> None:
        if self._supervisor is not None:
            self._supervisor.cancel()
