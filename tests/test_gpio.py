"""GPIO on gpiozero's mock pin factory: the button drives turns, the lights follow the agent."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_agent.config import GpioConfig, config_from_dict
from edge_agent.daemon import run_daemon
from edge_agent.errors import UserError
from edge_agent.gpio import COLORS, Apa102Ring, PushToTalk, StatusLights, start_gpio
from edge_agent.simulate import SimulateOptions, simulate
from tests.conftest import read_log, until, wait_until, write_wav
from tests.test_simulate import against


@pytest.fixture(autouse=True)
def mock_pins(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from gpiozero import Device
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    monkeypatch.setenv("GPIOZERO_PIN_FACTORY", "mock")
    monkeypatch.setenv("GPIOZERO_MOCK_PIN_CLASS", "mockpwmpin")
    Device.pin_factory = MockFactory(pin_class=MockPWMPin)
    yield Device.pin_factory
    Device.pin_factory.reset()
    Device.pin_factory = None


class FakeSpi:
    def __init__(self) -> None:
        self.writes: list[list[int]] = []
        self.closed = False

    def xfer2(self, data: list[int]) -> None:
        self.writes.append(list(data))

    def close(self) -> None:
        self.closed = True


async def test_press_and_release_are_activity_start_and_end_on_the_wire(
    start_emulator: Callable[..., Any],
    mock_pins: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    emulator = await start_emulator()
    silence = write_wav(tmp_path / "mic.wav", np.full(16000 * 30, 200, np.int16))
    config = against(
        emulator,
        turns={"mode": "push_to_talk"},
        conversation={"start": "button"},
        gpio={"button_pin": 17, "led_pin": 22, "privacy_led_pin": 23},
        audio={"input_device": f"file:{silence}", "output_device": f"file:{tmp_path}/o.wav"},
        service={"state_dir": str(tmp_path / "state")},
    )
    monkeypatch.setenv("GEMINI_API_KEY", "k")
    stop = asyncio.Event()
    daemon = asyncio.create_task(run_daemon(config, use_emulator=False, stop=stop))

    def sent() -> list[str]:
        return [
            next(iter(e["msg"]["realtimeInput"]))
            for e in read_log(emulator)
            if e["dir"] == "in" and "realtimeInput" in e["msg"]
        ]

    # the daemon starts in this loop: wait until it watches the pin
    await until(lambda: mock_pins.pin(17).when_changed is not None)
    button = mock_pins.pin(17)
    button.drive_low()  # pressed (pull-up)
    await until(lambda: sent().count("audio") > 10)  # held while the microphone streams
    assert mock_pins.pin(23).state == 1  # the privacy light: the mic uplink is live
    button.drive_high()
    await until(
        lambda: any("turnComplete" in e["msg"].get("serverContent", {}) for e in read_log(emulator))
    )
    stop.set()
    assert await daemon == 0
    assert sent()[0] == "activityStart" and sent()[-1] == "activityEnd"
    assert set(sent()[1:-1]) == {"audio"}


async def test_toggle_mode_and_polling(mock_pins: Any) -> None:
    events: list[bool] = []
    toggle = PushToTalk(GpioConfig(button_pin=5, button_mode="toggle"), events.append)
    toggle.start()
    pin = mock_pins.pin(5)
    pin.drive_low()
    pin.drive_high()
    await until(lambda: events == [True])
    pin.drive_low()
    pin.drive_high()
    await until(lambda: events == [True, False])
    toggle.close()

    events.clear()
    polled = PushToTalk(GpioConfig(button_pin=6, poll_ms=10), events.append)
    polled.start()
    assert polled.polling and mock_pins.pin(6).when_changed is None  # no edge detection used
    mock_pins.pin(6).drive_low()
    await until(lambda: events == [True])
    mock_pins.pin(6).drive_high()
    await until(lambda: events == [True, False])
    polled.close()


async def test_polling_is_the_fallback_when_edges_cannot_be_set_up(
    mock_pins: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from gpiozero.exc import PinEdgeDetectUnsupported
    from gpiozero.pins.mock import MockPin

    def no_edges(self: Any, value: Any) -> None:
        raise PinEdgeDetectUnsupported("edge detection unreliable")

    monkeypatch.setattr(MockPin, "_set_edges", no_edges)
    events: list[bool] = []
    button = PushToTalk(GpioConfig(button_pin=7), events.append)
    button.start()
    assert button.polling and "polling" in caplog.text
    mock_pins.pin(7).drive_low()
    await until(lambda: events == [True])
    button.close()


async def test_long_press_mutes_and_double_press_ends(
    start_emulator: Callable[..., Any], speech: Callable[..., np.ndarray], tmp_path: Path
) -> None:
    wav_in = write_wav(tmp_path / "in.wav", speech("hello are you there", gap_s=2.0, lead_s=3.0))
    emulator = await start_emulator()
    config = against(emulator, gpio={"long_press_s": 1.0})
    summary = await simulate(config, SimulateOptions(input=wav_in, ptt_spans=((0.2, 1.5),)))
    assert summary["turns"] == []  # muted by the long press: the speech opened nothing


def test_lights_follow_the_agent_state(mock_pins: Any) -> None:
    spi = FakeSpi()
    config = GpioConfig(
        led_pin=12, rgb_pins=[16, 20, 21], privacy_led_pin=26, ring="apa102", ring_leds=3
    )
    lights = StatusLights(config, spi_opener=lambda: spi)
    lights.start()
    led, red, green, blue = (mock_pins.pin(p) for p in (12, 16, 20, 21))
    lights.show("listening")
    assert led.state == 1
    assert (red.state, green.state, blue.state) == pytest.approx(COLORS["listening"])
    lights.show("idle")
    assert led.state == 0 and (red.state, green.state, blue.state) == (0, 0, 0)
    lights.show("error")
    assert (red.state, green.state, blue.state) == (1, 0, 0)
    led.clear_states()
    lights.show("thinking")  # blinks 0.15 s on / 0.15 s off in gpiozero's own thread
    wait_until(lambda: {round(s.state) for s in led.states} == {0, 1})
    lights.privacy(True)
    assert mock_pins.pin(26).state == 1
    lights.privacy(False)
    assert mock_pins.pin(26).state == 0
    listening = [0, 0, 0, 0] + [0xE0 | 8, 255, 76, 0] * 3 + [0]
    assert listening in spi.writes  # blue 1.0, green 0.3, red 0 -> B, G, R bytes
    assert spi.writes[-2][4:8] == [0xE0 | 8, 0, 0, 255]  # error: red
    lights.close()
    assert spi.closed and spi.writes[-1][4:8] == [0xE0 | 8, 0, 0, 0]  # ring off at close


def test_apa102_frame_layout() -> None:
    ring = Apa102Ring(FakeSpi(), count=20, brightness=31)
    frame = ring.frame([(1, 2, 3)] * 20)
    assert frame[:4] == [0, 0, 0, 0] and frame[4:8] == [0xFF, 3, 2, 1]
    assert len(frame) == 4 + 20 * 4 + 2  # end frame: one bit per two LEDs, rounded up


async def test_a_broken_ring_leaves_the_button_and_the_leds_working(
    mock_pins: Any, caplog: pytest.LogCaptureFixture
) -> None:
    def spi_off() -> Any:  # dtparam=spi=on forgotten: the device node is not there
        raise FileNotFoundError(2, "No such file or directory", "/dev/spidev0.1")

    caplog.set_level(logging.INFO)
    events: list[bool] = []
    config = GpioConfig(button_pin=17, led_pin=25, ring="apa102", privacy_led_pin=26)
    button, lights = start_gpio(config, events.append, spi_opener=spi_off)
    assert button is not None and lights is not None
    failures = [r.message for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(failures) == 1, failures
    assert "ring" in failures[0] and "dtparam=spi=on" in failures[0]
    mock_pins.pin(17).drive_low()
    mock_pins.pin(17).drive_high()
    await until(lambda: events == [True, False])  # the button works without the ring
    lights.show("listening")
    lights.privacy(True)
    assert mock_pins.pin(25).state == 1 and mock_pins.pin(26).state == 1
    button.close()
    lights.close()


async def test_each_failing_part_is_one_line_with_its_fix(
    mock_pins: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from gpiozero import LED

    def no_spidev() -> Any:
        raise ImportError("No module named 'spidev'")

    caplog.set_level(logging.WARNING)
    held = LED(25)  # another program holds the status LED's pin
    config = GpioConfig(button_pin=17, led_pin=25, ring="apa102")
    button, lights = start_gpio(config, lambda pressed: None, spi_opener=no_spidev)
    lines = [r.message for r in caplog.records]
    assert len(lines) == 2, lines
    assert "status LED on GPIO25" in lines[0] and "in use" in lines[0]
    assert "ring" in lines[1] and "python3-spidev" in lines[1]
    assert button is not None
    for part in (button, lights, held):
        if part is not None:
            part.close()


async def test_no_gpio_is_one_line_unless_required(
    mock_pins: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    from gpiozero import LED

    held = LED(17)  # the pin is already in use
    button, lights = start_gpio(GpioConfig(button_pin=17), lambda pressed: None)
    assert button is None and lights is None
    assert len([r for r in caplog.records if "button on GPIO17" in r.message]) == 1
    with pytest.raises(UserError, match=r"button on GPIO17.*required = true"):
        start_gpio(GpioConfig(button_pin=17, required=True), lambda pressed: None)
    held.close()
    with pytest.raises(ValueError, match=r"BCM pins are 0\.\.27"):  # a bad pin never gets here
        GpioConfig(button_pin=999)


def test_a_config_with_gpio_keys_validates() -> None:
    config = config_from_dict({"gpio": {"button_pin": 17, "rgb_pins": [1, 2, 3]}})
    assert config.gpio.rgb_pins == [1, 2, 3]


def test_run_with_a_broken_ring_keeps_the_button(tmp_path: Path) -> None:
    """The real command line on gpiozero's mock pins; the ring's SPI is not there."""
    import signal
    import socket

    from tests.test_service import read_until, start_daemon

    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(str(tmp_path / "notify.sock"))
        notify.settimeout(10)
        daemon = start_daemon(
            tmp_path,
            '[gpio]\nbutton_pin = 17\nring = "apa102"\nled_pin = 25\n',
            GPIOZERO_PIN_FACTORY="mock",
            GPIOZERO_MOCK_PIN_CLASS="mockpwmpin",
        )
        try:
            read_until(notify, "READY=1", [])
        finally:
            daemon.send_signal(signal.SIGTERM)
            _, stderr = daemon.communicate(timeout=15)
    assert daemon.returncode == 0, stderr
    assert "button on GPIO17 (hold, edges)" in stderr
    ring = [line for line in stderr.splitlines() if "ring" in line]
    assert len(ring) == 1 and "spi" in ring[0].lower(), ring
    assert "button" not in ring[0]  # only the ring is gone
    assert "Traceback" not in stderr


async def test_required_concerns_the_button_and_the_privacy_led_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """gpiozero's plain mock pins have no PWM: the status and RGB LEDs fail, each with its fix,
    and `required` does not stop the rest; the parts that come up say so."""
    from gpiozero import LED, Device
    from gpiozero.pins.mock import MockFactory, MockPin

    def no_spidev() -> Any:
        raise ImportError("No module named 'spidev'")

    Device.pin_factory = MockFactory(pin_class=MockPin)
    caplog.set_level(logging.INFO, logger="edge_agent.gpio")
    config = GpioConfig(
        button_pin=17, led_pin=25, rgb_pins=[16, 20, 21], ring="apa102", privacy_led_pin=26,
        required=True,
    )  # fmt: skip
    button, lights = start_gpio(config, lambda pressed: None, spi_opener=no_spidev)
    assert button is not None and lights is not None and lights.privacy_led is not None
    failures = [r.message for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(failures) == 3, failures
    for line, part in zip(failures, ("status LED on GPIO25", "RGB LED", "ring"), strict=True):
        assert part in line
    for line in failures[:2]:
        assert "MockFactory has no PWM" in line and "GPIOZERO_MOCK_PIN_CLASS=mockpwmpin" in line
    assert "python3-spidev" in failures[2]
    up = [r.message for r in caplog.records if r.levelno == logging.INFO]
    assert up == ["button on GPIO17 (hold, edges)", "privacy LED on GPIO26"]
    button.close()
    lights.close()

    held = LED(26)  # the privacy LED cannot be set up: with required, the daemon does not run
    with pytest.raises(UserError, match=r"^privacy LED on GPIO26 unavailable: .*in use"):
        start_gpio(GpioConfig(privacy_led_pin=26, required=True), lambda pressed: None)
    held.close()


def test_each_led_that_comes_up_is_one_line(
    mock_pins: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="edge_agent.gpio")
    config = GpioConfig(led_pin=12, rgb_pins=[16, 20, 21], privacy_led_pin=26, ring="apa102")
    lights = StatusLights(config, spi_opener=FakeSpi)
    lights.start()
    assert [r.message for r in caplog.records] == [
        "status LED on GPIO12",
        "RGB LED on GPIO16/20/21",
        "APA102 ring on SPI0 (12 LEDs)",
        "privacy LED on GPIO26",
    ]
    lights.close()


def test_run_on_plain_mock_pins_with_required_names_each_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`run` on gpiozero's plain mock pins: the LEDs without PWM are one line each naming the
    mock pin class, `required = true` does not stop the daemon, and gpiozero's own warnings
    do not reach stderr."""
    import signal
    import socket

    from tests.test_service import read_until, start_daemon

    monkeypatch.delenv("GPIOZERO_MOCK_PIN_CLASS")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(str(tmp_path / "notify.sock"))
        notify.settimeout(10)
        daemon = start_daemon(
            tmp_path,
            "[gpio]\nbutton_pin = 17\nled_pin = 25\nrgb_pins = [16, 20, 21]\n"
            "privacy_led_pin = 26\nrequired = true\n",
            GPIOZERO_PIN_FACTORY="mock",
        )
        try:
            read_until(notify, "READY=1", [])
        finally:
            daemon.send_signal(signal.SIGTERM)
            _, stderr = daemon.communicate(timeout=15)
    assert daemon.returncode == 0, stderr
    gpio = [line for line in stderr.splitlines() if "edge_agent.gpio" in line]
    assert len(gpio) == 4, gpio
    assert "button on GPIO17 (hold, edges)" in gpio[0]
    for line, part in zip(gpio[1:3], ("status LED on GPIO25", "RGB LED on"), strict=True):
        assert "WARNING" in line and part in line and "GPIOZERO_MOCK_PIN_CLASS=mockpwmpin" in line
    assert "INFO" in gpio[3] and gpio[3].endswith("privacy LED on GPIO26")
    assert "Warning" not in stderr and "Traceback" not in stderr


def test_devices_names_the_pin_factory_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """Off a Pi gpiozero warns once per default factory it cannot load; `devices` says it in
    its one line (on a Pi, the factory in use)."""
    from tests.conftest import run_cli

    monkeypatch.delenv("GPIOZERO_PIN_FACTORY")
    monkeypatch.delenv("GPIOZERO_MOCK_PIN_CLASS")
    result = run_cli("devices")
    assert result.returncode == 0, result.stderr
    assert "PinFactoryFallback" not in result.stderr and "warnings.warn" not in result.stderr
    [line] = [line for line in result.stdout.splitlines() if line.startswith("gpio pin factory")]
    assert "Factory" in line or "sudo apt install python3-lgpio" in line, line
    mock = run_cli("devices", env={"GPIOZERO_PIN_FACTORY": "mock"})
    assert "gpio pin factory: MockFactory (GPIOZERO_PIN_FACTORY=mock)" in mock.stdout


async def test_gpio_output_without_a_pin_factory_says_why_each_call_without_warnings(
    monkeypatch: pytest.MonkeyPatch, recwarn: pytest.WarningsRecorder
) -> None:
    """No pin factory loads (off a Pi): each call is an error naming the fix, and gpiozero's
    fallback warnings stay inside."""
    from gpiozero import Device
    from gpiozero.pins.mock import MockFactory

    from edge_agent.events import FunctionCall
    from edge_agent.gpio import DEVICE_TREE
    from edge_agent.tools import builtins
    from edge_agent.tools.runner import ToolContext, ToolRunner

    if (DEVICE_TREE / "model").exists():
        pytest.skip("a Raspberry Pi: its pins would really switch")
    monkeypatch.delenv("GPIOZERO_PIN_FACTORY")
    Device.pin_factory.reset()
    Device.pin_factory = None
    answers: dict[str, dict[str, Any]] = {}
    runner = ToolRunner(
        [builtins.gpio_output_tool(["fan"])],
        ToolContext(end_conversation=lambda: None, gpio_outputs={"fan": 5}),
        lambda call_id, name, response, scheduling: answers.update({call_id: response}),
        timeout_s=10,
    )
    runner.start(FunctionCall("a", "gpio_output", {"name": "fan", "on": True}))
    runner.start(FunctionCall("b", "gpio_output", {"name": "fan", "on": False}))
    while len(answers) < 2:
        await asyncio.sleep(0.02)
    for answer in answers.values():
        assert "no GPIO pin factory" in answer["error"]
        assert "python3-lgpio" in answer["error"]
    assert not [w for w in recwarn if "Falling back" in str(w.message)]
    Device.pin_factory = MockFactory()  # for the fixture's teardown
