"""Camera: frames from Picamera2, OpenCV (USB webcams, video files) or image files, as JPEG to
the Live API at `fps`, only inside the chosen windows.

Capturing, resizing and encoding run in a worker thread, never on the event loop, and a slow
camera only delays the next frame, never audio. The rate follows the agent's clock (ticks), so
simulate's virtual clock paces it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edge_agent.config import CameraConfig

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}
RETRY_MAX_S = 60.0


class CameraUnavailable(Exception):
    pass


class FrameSource(Protocol):
    colorspace: str  # "RGB" or "BGR": the channel order of the arrays read() returns

    def open(self) -> None: ...
    def read(self) -> np.ndarray: ...
    def close(self) -> None: ...


class Picamera2Source:
    """Pi camera modules. Its "RGB888" arrays are B, G, R in memory."""

    colorspace = "BGR"

    def __init__(self, width: int, height: int) -> None:
        self.size = (width, height)
        self._camera: Any = None

    def open(self) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError as exc:
            raise CameraUnavailable("picamera2 is not installed (apt: python3-picamera2)") from exc
        try:
            self._camera = Picamera2()
            config = self._camera.create_video_configuration(
                main={"size": self.size, "format": "RGB888"}
            )
            self._camera.configure(config)
            self._camera.start()
        except (RuntimeError, IndexError, OSError) as exc:
            self.close()
            raise CameraUnavailable(f"Pi camera: {exc}") from exc

    def read(self) -> np.ndarray:
        return np.asarray(self._camera.capture_array("main"))

    def close(self) -> None:
        if self._camera is not None:
            with contextlib.suppress(Exception):
                self._camera.stop()
            self._camera.close()
            self._camera = None


class OpenCVSource:
    """A V4L2 webcam (an index or /dev/videoN) or a video file, looped."""

    colorspace = "BGR"

    def __init__(self, device: str) -> None:
        self.device: int | str = int(device) if device.strip().isdigit() else device
        self._capture: Any = None

    def open(self) -> None:
        try:
            import cv2
        except ImportError as exc:
            raise CameraUnavailable("opencv is not installed (edge-agent[camera])") from exc
        self._capture = cv2.VideoCapture(self.device)
        if not self._capture.isOpened():
            raise CameraUnavailable(f"cannot open camera {self.device!r}")

    def read(self) -> np.ndarray:
        ok, frame = self._capture.read()
        if not ok and isinstance(self.device, str):  # a video file ended: loop
            import cv2

            self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = self._capture.read()
        if not ok:
            raise CameraUnavailable(f"camera {self.device!r} gave no frame")
        return np.asarray(frame)

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None


class FilesSource:
    """One image or a folder of images, looped (demos, kiosks without a camera)."""

    colorspace = "RGB"

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self._files: list[Path] = []
        self._next = 0

    def open(self) -> None:
        if self.path.is_dir():
            self._files = sorted(
                p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES
            )
        elif self.path.is_file():
            self._files = [self.path]
        if not self._files:
            raise CameraUnavailable(f"no images at {self.path}")

    def read(self) -> np.ndarray:
        path = self._files[self._next % len(self._files)]
        self._next += 1
        data = path.read_bytes()
        if path.suffix.lower() in (".jpg", ".jpeg"):
            import simplejpeg

            return np.asarray(simplejpeg.decode_jpeg(data, colorspace="RGB"))
        try:
            import cv2
        except ImportError as exc:
            raise CameraUnavailable(
                f"{path.suffix} images need opencv (edge-agent[camera])"
            ) from exc
        image = cv2.imread(str(path))
        if image is None:
            raise CameraUnavailable(f"cannot read the image {path}")
        return np.asarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))

    def close(self) -> None:
        self._files = []


def make_source(config: CameraConfig) -> FrameSource | None:
    if config.source == "picamera2":
        return Picamera2Source(config.width, config.height)
    if config.source == "opencv":
        return OpenCVSource(config.device or "0")
    if config.source == "files":
        return FilesSource(config.path)
    return None


def fit(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    """Scales the frame down (never up) to fit width x height, keeping its aspect."""
    rows, columns = frame.shape[:2]
    scale = min(width / columns, height / rows, 1.0)
    if scale == 1.0:
        return frame
    size = (max(1, int(columns * scale)), max(1, int(rows * scale)))
    try:
        import cv2

        return np.asarray(cv2.resize(frame, size, interpolation=cv2.INTER_AREA))
    except ImportError:  # without opencv: nearest-neighbour picking
        ys = (np.arange(size[1]) / scale).astype(int)
        xs = (np.arange(size[0]) / scale).astype(int)
        return np.ascontiguousarray(frame[ys][:, xs])


class Camera:
    def __init__(
        self,
        config: CameraConfig,
        source: FrameSource,
        send: Callable[[bytes], None],
        clock: Callable[[], float],
    ) -> None:
        self.config = config
        self.source = source
        self.send = send
        self.clock = clock
        self.window_open = False
        self.streaming_listeners: list[Callable[[bool], None]] = []  # the privacy light
        self.frames_sent = 0
        self._opened = False
        self._failed_at: float | None = None
        self._retry_s = 1.0
        self._last_sent = -1e9
        self._capturing: asyncio.Task[None] | None = None
        self._lock = threading.Lock()  # the periodic capture and capture_one() may overlap

    def update_window(self, user_talking: bool, conversation_open: bool) -> None:
        send = self.config.send
        if send == "while_talking":
            wanted = user_talking and conversation_open
        elif send in ("in_conversation", "always"):
            wanted = conversation_open
        else:  # on_request: only capture_one()
            wanted = False
        if wanted != self.window_open:
            self.window_open = wanted
            for listener in self.streaming_listeners:
                listener(wanted)

    def tick(self) -> None:
        """Called on every mic frame: starts a capture when one is due."""
        if not self.window_open or self._capturing is not None:
            return
        now = self.clock()
        if now - self._last_sent < 1.0 / self.config.fps:
            return
        if self._failed_at is not None and now - self._failed_at < self._retry_s:
            return
        self._last_sent = now
        self._capturing = asyncio.create_task(self._capture_and_send())

    async def _capture_and_send(self) -> None:
        try:
            jpeg = await asyncio.to_thread(self._capture)
        except CameraUnavailable as exc:
            self._failure(exc)
        else:
            self._failed_at, self._retry_s = None, 1.0
            if self.window_open:
                self.send(jpeg)
                self.frames_sent += 1
        finally:
            self._capturing = None

    def _failure(self, exc: Exception) -> None:
        if self._failed_at is None:  # logged once; retried with backoff, audio goes on
            log.warning("camera unavailable (%s); continuing audio-only, retrying", exc)
        else:
            self._retry_s = min(self._retry_s * 2, RETRY_MAX_S)
        self._failed_at = self.clock()
        self._opened = False
        with contextlib.suppress(Exception):
            self.source.close()

    def _capture(self) -> bytes:
        """Worker thread: open if needed, read, fit, encode."""
        with self._lock:
            return self._capture_locked()

    def _capture_locked(self) -> bytes:
        if not self._opened:
            self.source.open()
            self._opened = True
        try:
            frame = self.source.read()
        except CameraUnavailable:
            raise
        except Exception as exc:  # a camera pulled out mid-read
            raise CameraUnavailable(str(exc)) from exc
        import simplejpeg  # only with a camera

        frame = np.ascontiguousarray(fit(frame, self.config.width, self.config.height))
        return bytes(
            simplejpeg.encode_jpeg(
                frame,
                quality=self.config.jpeg_quality,
                colorspace=self.source.colorspace,
                colorsubsampling="420",
            )
        )

    async def settle(self) -> None:
        """Waits for a capture in flight (simulate's virtual clock must not outrun it)."""
        if self._capturing is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self._capturing)

    async def capture_one(self) -> bytes:
        """One fresh frame now (the `look` tool)."""
        started = time.monotonic()
        try:
            jpeg = await asyncio.to_thread(self._capture)
        except CameraUnavailable as exc:
            self._failure(exc)
            raise
        log.info("camera: one frame in %.0f ms", (time.monotonic() - started) * 1000)
        return jpeg

    def close(self) -> None:
        if self._capturing is not None:
            self._capturing.cancel()
        with contextlib.suppress(Exception):
            self.source.close()
