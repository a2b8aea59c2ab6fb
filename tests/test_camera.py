"""Camera: OpenCV (a generated video file), image files, and Picamera2 through a stand-in."""

from __future__ import annotations

import logging
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import simplejpeg

from edge_agent.camera import Camera, Picamera2Source
from edge_agent.config import CameraConfig
from edge_agent.emulator.scenario import Scenario, ToolCallStep, Turn
from edge_agent.simulate import SimulateOptions, simulate
from tests.conftest import read_log, write_wav
from tests.test_simulate import against


def video_file(path: Path, width: int = 1280, height: int = 720, frames: int = 20) -> Path:
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (width, height))
    for index in range(frames):
        frame = np.zeros((height, width, 3), np.uint8)
        frame[:, : (index + 1) * width // frames] = (0, 128, 255)  # BGR orange bar
        writer.write(frame)
    writer.release()
    return path


def sizes(frames: list[bytes]) -> set[tuple[int, int]]:
    return {simplejpeg.decode_jpeg_header(f)[:2] for f in frames}  # (height, width)


def video_in_turns(emulator: Any) -> tuple[int, int]:
    """Frames received inside user turns and outside them, by wire order."""
    inside = outside = 0
    in_turn = False
    for entry in read_log(emulator):
        realtime = entry["msg"].get("realtimeInput", {})
        if "activityStart" in realtime:
            in_turn = True
        elif "activityEnd" in realtime:
            in_turn = False
        elif "video" in realtime:
            assert realtime["video"]["mimeType"] == "image/jpeg"
            inside, outside = (inside + 1, outside) if in_turn else (inside, outside + 1)
    return inside, outside


async def test_opencv_frames_flow_only_while_the_user_talks(
    start_emulator: Callable[..., Any], speech: Callable[..., np.ndarray], tmp_path: Path
) -> None:
    movie = video_file(tmp_path / "scene.avi")
    wav_in = write_wav(tmp_path / "in.wav", speech("what do you see", "and now", gap_s=3.0))
    emulator = await start_emulator()
    config = against(
        emulator,
        camera={"source": "opencv", "device": str(movie), "fps": 2.0, "send": "while_talking"},
    )
    summary = await simulate(config, SimulateOptions(input=wav_in))
    inside, outside = video_in_turns(emulator)
    assert outside == 0 and inside == len(emulator.video_frames)
    talking = sum(t["end_s"] - t["start_s"] for t in summary["turns"])
    hangover = 0.6 * len(summary["turns"])
    assert abs(inside - (talking + hangover) * 2.0) <= 2 * len(summary["turns"]) + 1
    assert sizes(emulator.video_frames) == {(432, 768)}  # 1280x720 fitted into 768x768
    setup = emulator.parsed_setups[0]
    assert setup["contextWindowCompression"] and setup["generationConfig"]["mediaResolution"]


async def test_image_files_flow_through_the_conversation(
    start_emulator: Callable[..., Any], speech: Callable[..., np.ndarray], tmp_path: Path
) -> None:
    folder = tmp_path / "scene"
    folder.mkdir()
    for index, color in enumerate([(255, 0, 0), (0, 255, 0)]):
        image = np.full((1024, 1024, 3), color, np.uint8)
        (folder / f"{index}.jpg").write_bytes(simplejpeg.encode_jpeg(image, colorspace="RGB"))
    wav_in = write_wav(tmp_path / "in.wav", speech("hello", gap_s=4.0))
    emulator = await start_emulator()
    config = against(
        emulator,
        camera={
            "source": "files",
            "path": str(folder),
            "send": "in_conversation",
            "width": 512,
            "height": 512,
        },
        live={"context_compression": False},
    )
    await simulate(config, SimulateOptions(input=wav_in))
    _, outside = video_in_turns(emulator)
    assert outside >= 2  # also while the model answers: the whole conversation
    assert sizes(emulator.video_frames) == {(512, 512)}
    colors = {
        tuple(
            round(int(c) / 32) * 32 for c in simplejpeg.decode_jpeg(frame, colorspace="RGB")[10, 10]
        )
        for frame in emulator.video_frames
    }
    assert colors == {(256, 0, 0), (0, 256, 0)}  # the folder's images, looped, in RGB order
    # video is on, so compression is on although the config said no
    assert emulator.parsed_setups[0]["contextWindowCompression"]


async def test_the_look_tool_sends_one_fresh_frame(
    start_emulator: Callable[..., Any], speech: Callable[..., np.ndarray], tmp_path: Path
) -> None:
    movie = video_file(tmp_path / "scene.avi")
    wav_in = write_wav(tmp_path / "in.wav", speech("what is in front of you", gap_s=3.0))
    scenario = Scenario(turns=[Turn(tool_call=ToolCallStep(name="look"))])
    emulator = await start_emulator(scenario=scenario)
    config = against(
        emulator,
        camera={"source": "opencv", "device": str(movie), "send": "on_request"},
        tools={"enabled": ["look"]},
        conversation={"idle_timeout_s": 60},
    )
    await simulate(config, SimulateOptions(input=wav_in))
    assert len(emulator.video_frames) == 1
    response = next(
        e["msg"]["toolResponse"]["functionResponses"][0]
        for e in read_log(emulator)
        if "toolResponse" in e["msg"]
    )
    assert response["response"]["output"].startswith("sent a picture")


async def test_a_missing_camera_is_logged_once_and_audio_goes_on(
    start_emulator: Callable[..., Any],
    speech: Callable[..., np.ndarray],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    wav_in = write_wav(tmp_path / "in.wav", speech("is the camera on", gap_s=3.0))
    emulator = await start_emulator()
    config = against(
        emulator, camera={"source": "opencv", "device": "/dev/video9", "send": "in_conversation"}
    )
    summary = await simulate(config, SimulateOptions(input=wav_in))
    assert summary["turns"][0]["first_audio_ms"] is not None
    assert emulator.video_frames == []
    assert len([r for r in caplog.records if "camera unavailable" in r.message]) == 1


class FakePicamera2:
    """The one place the real library cannot run here: a stand-in recording its calls."""

    calls: ClassVar[list[tuple[str, Any]]] = []

    def __init__(self) -> None:
        self.calls.append(("init", None))

    def create_video_configuration(self, main: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("create_video_configuration", main))
        return {"main": main}

    def configure(self, config: dict[str, Any]) -> None:
        self.calls.append(("configure", config))

    def start(self) -> None:
        self.calls.append(("start", None))

    def capture_array(self, stream: str) -> np.ndarray:
        self.calls.append(("capture_array", stream))
        frame = np.zeros((480, 640, 3), np.uint8)
        frame[:, :, 0] = 255  # "RGB888" is B, G, R in memory: this frame is blue
        return frame

    def stop(self) -> None:
        self.calls.append(("stop", None))

    def close(self) -> None:
        self.calls.append(("close", None))


async def test_the_picamera2_source_against_a_stand_in(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("picamera2")
    module.Picamera2 = FakePicamera2  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "picamera2", module)
    FakePicamera2.calls.clear()
    sent: list[bytes] = []
    config = CameraConfig(source="picamera2", width=640, height=480, send="always")
    camera = Camera(config, Picamera2Source(640, 480), sent.append, clock=lambda: 0.0)
    jpeg = await camera.capture_one()
    camera.close()
    names = [name for name, _ in FakePicamera2.calls]
    assert names == [
        "init",
        "create_video_configuration",
        "configure",
        "start",
        "capture_array",
        "stop",
        "close",
    ]
    assert FakePicamera2.calls[1][1] == {"size": (640, 480), "format": "RGB888"}
    pixel = simplejpeg.decode_jpeg(jpeg, colorspace="RGB")[100, 100]
    assert tuple(pixel) == pytest.approx((0, 0, 255), abs=8)  # blue stayed blue


def test_without_picamera2_installed_the_source_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    from edge_agent.camera import CameraUnavailable

    monkeypatch.setitem(sys.modules, "picamera2", None)
    with pytest.raises(CameraUnavailable, match="python3-picamera2"):
        Picamera2Source(640, 480).open()


def test_the_privacy_light_follows_the_frames() -> None:
    from edge_agent.camera import FilesSource

    states: list[bool] = []
    camera = Camera(
        CameraConfig(source="files", path="x"), FilesSource("x"), lambda f: None, clock=lambda: 0.0
    )
    camera.streaming_listeners.append(states.append)
    camera.update_window(user_talking=True, conversation_open=True)
    camera.update_window(user_talking=False, conversation_open=True)
    camera.update_window(user_talking=True, conversation_open=False)
    assert states == [True, False]
