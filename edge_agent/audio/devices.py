"""PortAudio device enumeration and selection by name substring, index or "default"."""

from __future__ import annotations

import asyncio
import contextlib
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


STALLED_AFTER_S = 1.0  # an active stream that has not moved audio for this long is re-opened
CLOSE_WAIT_S = 1.0  # at close, for the thread's last read or write


class PortAudioStream(ABC):
    """One blocking PortAudio stream, served by a thread of ours that reads or writes a block
    at a time (`_step`), and re-opened (after a re-scan) when it stops or disappears.

    Blocking, not callbacks: PyAudio's callback wrapper costs a Python thread state, a dict and
    a bytes object per block; a blocking read can take a larger block when latency does not
    matter; and PortAudio starts a callback output stream with its buffer full of silence."""

    def __init__(self, name: str, device_spec: str) -> None:
        self.name = name
        self.device_spec = device_spec
        self.device_name = ""
        self.last_io = 0.0  # when the thread last read or wrote a block
        self._pa: Any = None
        self._stream: Any = None
        self._supervisor: asyncio.Task[None] | None = None
        self._control = threading.Lock()  # the stream: held by the thread for each block
        self._wakeup = threading.Event()
        self._thread: threading.Thread | None = None
        self._closing = False
        self._failed = False  # a read or write failed: the supervisor re-opens the stream

    @abstractmethod
    def _open_stream(self) -> None:
        """Opens the stream on a freshly scanned device (see _find)."""

    @abstractmethod
    def _step(self, stream: Any) -> bool:
        """Reads or writes one block, on the thread; False ends the thread."""

    def _waiting(self) -> bool:
        """True while the thread should sleep until _wakeup is set (besides a failure)."""
        return False

    def _find(self, direction: Direction) -> AudioDevice:
        """A fresh PortAudio instance (a re-scan) and the configured device in it."""
        self._pa = open_portaudio()
        default = default_device_index(self._pa, direction)
        return select_device(list_devices(self._pa), self.device_spec, direction, default)

    def _open_on(
        self, direction: Direction, parameters: Callable[[AudioDevice], dict[str, Any]]
    ) -> AudioDevice:
        """Scans, opens an int16 stream on the configured device with `parameters(device)`
        (rate, channels, block), and cleans up if that fails."""
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
        self.last_io = time.monotonic()
        return chosen

    def _serve(self) -> None:
        """Opens the stream and starts the thread that serves it."""
        with self._control:
            self._open_stream()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._closing:
            if self._failed or self._waiting():
                self._wakeup.wait()
                self._wakeup.clear()
                continue
            with self._control:
                if self._closing:
                    break
                if self._stream is None:  # a re-open failed; the supervisor tries again
                    self._failed = True
                    continue
                try:
                    going_on = self._step(self._stream)
                except OSError as exc:
                    log.warning("%s: %s", self.name, exc)
                    self._failed = True
                    continue
                except Exception:  # the supervisor re-opens; the daemon goes on
                    log.exception("%s: failed", self.name)
                    self._failed = True
                    continue
            self.last_io = time.monotonic()
            if not going_on:
                break

    def _supervise(self) -> None:
        self._supervisor = asyncio.create_task(
            keep_open(self.name, self._stream_active, self._reopen)
        )

    def _stream_active(self) -> bool:
        """Running and moving audio. A stream can stay active with PortAudio's thread spinning
        and no audio moving (seen in ALSA after an overrun): re-open that too."""
        return (
            not self._failed
            and self._stream is not None
            and bool(self._stream.is_active())
            and time.monotonic() - self.last_io < STALLED_AFTER_S
        )

    def _reopen(self) -> None:
        with self._control:
            self._terminate()
            self._open_stream()
            self._failed = False
        self._wakeup.set()

    def alive(self) -> bool:
        """Audio moved recently (the watchdog's view of the audio thread). A read or write that
        never returns (a stalled device) shows here, and systemd restarts the daemon."""
        return self._stream is not None and time.monotonic() - self.last_io < 2.0

    def _shut(self) -> None:
        """Ends the thread and closes the stream; a thread stuck in a stalled device's read or
        write is left as it is (it holds the stream)."""
        self._stop_supervising()
        self._closing = True
        self._wakeup.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=CLOSE_WAIT_S)
        if not self._control.acquire(timeout=CLOSE_WAIT_S):
            log.warning("%s: the device stopped moving audio; left as it is", self.name)
            return
        try:
            self._terminate()  # Pa_StopStream plays out what an output still holds
        finally:
            self._control.release()

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
