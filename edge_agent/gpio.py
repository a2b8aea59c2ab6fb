"""Push-to-talk button and status lights on GPIO (gpiozero), and an APA102 ring over SPI.

gpiozero calls back from its own threads; callbacks only hand the event to the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import struct
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from edge_agent.config import GpioConfig
from edge_agent.errors import UserError

log = logging.getLogger(__name__)

DEVICE_TREE = Path("/sys/firmware/devicetree/base")  # /proc/device-tree points here
BUTTON_BOUNCE_S = 0.02
# (on seconds, off seconds) for a single LED; None = steady on, () = off, "pulse" = breathe
LED_PATTERNS: dict[str, Any] = {
    "idle": (),
    "listening": None,
    "thinking": (0.15, 0.15),
    "speaking": "pulse",
    "muted": (0.1, 1.9),
    "offline": (1.0, 1.0),
    "error": (0.08, 0.08),
}
COLORS: dict[str, tuple[float, float, float]] = {
    "idle": (0.0, 0.0, 0.0),
    "listening": (0.0, 0.3, 1.0),
    "thinking": (0.0, 0.8, 0.8),
    "speaking": (0.0, 1.0, 0.2),
    "muted": (0.6, 0.0, 0.0),
    "offline": (1.0, 0.4, 0.0),
    "error": (1.0, 0.0, 0.0),
}


class PushToTalk:
    """The button as pressed/released events on the loop; hold or toggle; edges or polling."""

    def __init__(self, config: GpioConfig, on_button: Callable[[bool], None]) -> None:
        self.config = config
        self.on_button = on_button
        self.polling = config.poll_ms > 0
        self._button: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._poller: asyncio.Task[None] | None = None
        self._toggled_on = False

    def start(self) -> None:
        from gpiozero import Button, InputDevice
        from gpiozero.exc import PinEdgeDetectUnsupported

        self._loop = asyncio.get_running_loop()
        pin, pull_up = self.config.button_pin, self.config.button_pull_up
        if not self.polling:
            try:
                self._button = Button(pin, pull_up=pull_up, bounce_time=BUTTON_BOUNCE_S)
                self._button.when_pressed = lambda: self._hand_over(True)
                self._button.when_released = lambda: self._hand_over(False)
            except PinEdgeDetectUnsupported:
                log.warning("button: no edge detection on GPIO%d; polling every 10 ms", pin)
                self.polling = True
        if self.polling:  # a plain input: no edge detection is set up at all
            self._button = InputDevice(pin, pull_up=pull_up)
            interval = max(self.config.poll_ms, 10) / 1000
            self._poller = asyncio.create_task(self._poll(interval, bool(self._button.is_active)))
        mode = "polling" if self.polling else "edges"
        log.info("button on GPIO%d (%s, %s)", pin, self.config.button_mode, mode)

    def _hand_over(self, pressed: bool) -> None:
        """Runs on gpiozero's thread: only hands the edge to the loop."""
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._edge, pressed)

    async def _poll(self, interval: float, was_pressed: bool) -> None:
        while True:
            await asyncio.sleep(interval)
            pressed = bool(self._button.is_active)
            if pressed != was_pressed:
                was_pressed = pressed
                self._edge(pressed)

    def _edge(self, pressed: bool) -> None:
        if self.config.button_mode == "hold":
            self.on_button(pressed)
        elif pressed:  # toggle: a press starts, the next press ends
            self._toggled_on = not self._toggled_on
            self.on_button(self._toggled_on)

    def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
        if self._button is not None:
            self._button.close()


class SpiBus(Protocol):
    def xfer2(self, data: list[int]) -> Any: ...
    def close(self) -> None: ...


def open_spi(bus: int = 0, device: int = 1) -> SpiBus:
    """The ReSpeaker 2-mic and 4-mic HATs drive their APA102 LEDs on SPI0, CE1."""
    import spidev

    spi = spidev.SpiDev()
    spi.open(bus, device)
    spi.max_speed_hz = 8_000_000
    spi.mode = 0
    return spi  # type: ignore[no-any-return]


class Apa102Ring:
    """APA102 frames: 32 zero bits, per LED 0xE0|brightness then blue, green, red, end bits."""

    def __init__(self, spi: SpiBus, count: int, brightness: int = 8) -> None:
        self.spi = spi
        self.count = count
        self.brightness = brightness

    def frame(self, colors: list[tuple[int, int, int]]) -> list[int]:
        data = [0, 0, 0, 0]
        for red, green, blue in colors:
            data += [0xE0 | self.brightness, blue, green, red]
        return data + [0] * ((self.count + 15) // 16)

    def fill(self, color: tuple[float, float, float]) -> None:
        rgb = tuple(int(c * 255) for c in color)
        self.spi.xfer2(self.frame([rgb] * self.count))  # type: ignore[list-item]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.fill((0.0, 0.0, 0.0))
        self.spi.close()


class StatusLights:
    """The agent's state on an LED, an RGB LED and/or an APA102 ring; a separate privacy LED."""

    def __init__(self, config: GpioConfig, spi_opener: Callable[[], SpiBus] = open_spi) -> None:
        self.config = config
        self.spi_opener = spi_opener
        self.led: Any = None
        self.rgb: Any = None
        self.ring: Apa102Ring | None = None
        self.privacy_led: Any = None
        self.state = "idle"

    def start(self) -> None:
        """Sets up each configured part on its own: one that fails is one log line with its fix,
        the others work. With `[gpio] required = true` a privacy LED that fails is a UserError:
        a device that cannot show it is sending audio does not run."""
        from gpiozero import LED, PWMLED, RGBLED

        config = self.config
        if config.led_pin:
            name = f"status LED on GPIO{config.led_pin}"
            self.led = _part(name, False, PWMLED, config.led_pin)
        if config.rgb_pins:
            name = f"RGB LED on GPIO{'/'.join(map(str, config.rgb_pins))}"
            self.rgb = _part(name, False, RGBLED, *config.rgb_pins)
        if config.ring == "apa102":
            name = f"APA102 ring on SPI0 ({config.ring_leds} LEDs)"
            spi = _part(name, False, self.spi_opener, pins=False)
            self.ring = Apa102Ring(spi, config.ring_leds) if spi is not None else None
        if config.privacy_led_pin:
            name = f"privacy LED on GPIO{config.privacy_led_pin}"
            self.privacy_led = _part(name, config.required, LED, config.privacy_led_pin)

    def show(self, state: str) -> None:
        self.state = state
        if self.led is not None:
            pattern = LED_PATTERNS[state]
            if pattern == ():
                self.led.off()
            elif pattern is None:
                self.led.on()
            elif pattern == "pulse":
                self.led.pulse(fade_in_time=0.6, fade_out_time=0.6)
            else:
                self.led.blink(on_time=pattern[0], off_time=pattern[1])
        if self.rgb is not None:
            self.rgb.color = COLORS[state]
        if self.ring is not None:
            self.ring.fill(COLORS[state])

    def privacy(self, live: bool) -> None:
        if self.privacy_led is not None:
            self.privacy_led.value = live

    def close(self) -> None:
        for part in (self.led, self.rgb, self.privacy_led, self.ring):
            if part is not None:
                part.close()


def teach_gpiozero() -> None:
    """gpiozero finds the board's revision in /proc/device-tree or /proc/cpuinfo, which the
    unit's ProcSubset=pid hides (every pin would fail); /sys has the same device tree."""
    from gpiozero.exc import PinUnknownPi
    from gpiozero.pins.local import LocalPiFactory

    original = LocalPiFactory._get_revision
    if getattr(original, "reads_sys", False):
        return

    def _get_revision(factory: Any) -> int:
        try:
            return int(original(factory))
        except (OSError, PinUnknownPi):
            data = (DEVICE_TREE / "system" / "linux,revision").read_bytes()
            revision = f"{struct.unpack('>L', data[:4])[0]:x}"
            return int(revision[-4:] if revision.startswith("100") else revision, 16)  # overvolted

    _get_revision.reads_sys = True  # type: ignore[attr-defined]
    LocalPiFactory._get_revision = _get_revision


def start_gpio(
    config: GpioConfig,
    on_button: Callable[[bool], None],
    spi_opener: Callable[[], SpiBus] = open_spi,
) -> tuple[PushToTalk | None, StatusLights | None]:
    """Starts what is configured, part by part (see StatusLights.start); without any part,
    gpiozero is not even imported. `[gpio] required` concerns the button and the privacy LED."""
    wanted = config.led_pin or config.rgb_pins or config.ring != "none" or config.privacy_led_pin
    if not (config.button_pin or wanted):
        return None, None
    button = PushToTalk(config, on_button) if config.button_pin else None
    if button is not None:
        name = f"button on GPIO{config.button_pin}"
        if _part(name, config.required, button.start, announce=False) is None:
            button = None
    lights = StatusLights(config, spi_opener) if wanted else None
    if lights is not None:
        try:
            lights.start()
        except UserError:  # a required privacy LED: nothing is left open behind the error
            lights.close()
            if button is not None:
                button.close()
            raise
    return button, lights


def _part(
    name: str,
    required: bool,
    make: Callable[..., Any],
    *args: Any,
    pins: bool = True,
    announce: bool = True,
) -> Any:
    """make(*args) and one log line: the part that came up (unless it says so itself), or the
    part that failed with the fix (a UserError instead when it is required)."""
    try:
        if pins:
            pin_factory()
        made = make(*args)
    except Exception as exc:  # gpiozero raises many kinds: no pin factory, pin in use, bad pin
        message = f"{name} unavailable: {describe(exc)}"
        if required:
            raise UserError(f"{message} ([gpio] required = true)") from None
        log.warning("%s; running without it", message)
        return None
    if announce:
        log.info("%s", name)
    return True if made is None else made


_factory_lock = threading.Lock()
_fallback_logged = False


def pin_factory() -> Any:
    """gpiozero's pin factory, found once. gpiozero warns for each default factory it cannot
    load (PinFactoryFallback); those become one log line, the first time one loads after
    fallbacks; when none loads, a BadPinFactory whose message names the first one's reason."""
    global _fallback_logged
    factory, fallbacks = load_pin_factory()
    if fallbacks and not _fallback_logged:
        _fallback_logged = True
        log.warning(
            "GPIO: using %s; %s (for PWM and every Pi: sudo apt install python3-lgpio)",
            type(factory).__name__,
            "; ".join(fallbacks),
        )
    return factory


def load_pin_factory() -> tuple[Any, list[str]]:
    """(the factory, why each preferred one did not load); raises BadPinFactory."""
    from gpiozero import Device
    from gpiozero.exc import BadPinFactory, PinWarning

    teach_gpiozero()
    with _factory_lock:
        if Device.pin_factory is not None:
            return Device.pin_factory, []
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", PinWarning)
            try:
                Device.ensure_pin_factory()
            except BadPinFactory as exc:
                reasons = _fallbacks(caught)
                raise BadPinFactory(reasons[0] if reasons else str(exc)) from None
        return Device.pin_factory, _fallbacks(caught)


def _fallbacks(caught: list[warnings.WarningMessage]) -> list[str]:
    """gpiozero's "Falling back from lgpio: No module named 'lgpio'" -> "lgpio: No module ..."."""
    from gpiozero.exc import NativePinFactoryFallback, PinFactoryFallback

    reasons = []
    for warning in caught:
        if issubclass(warning.category, NativePinFactoryFallback):
            reasons.append("NativeFactory has no PWM")
        elif issubclass(warning.category, PinFactoryFallback):
            reasons.append(str(warning.message).removeprefix("Falling back from "))
    return reasons


def describe(exc: Exception) -> str:
    """What went wrong with a GPIO or SPI part, and what fixes it."""
    from gpiozero import Device
    from gpiozero.exc import BadPinFactory, GPIOPinInUse, PinPWMUnsupported

    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, ImportError) and "spidev" in str(exc):
        return f"{text} (install it: sudo apt install python3-spidev)"
    if isinstance(exc, FileNotFoundError) and "spidev" in str(exc.filename):
        fix = "enable SPI: dtparam=spi=on in /boot/firmware/config.txt, then reboot"
        return f"{exc.filename} missing ({fix})"
    if isinstance(exc, PermissionError):
        return f"{text} (add the user to the gpio and spi groups: sudo usermod -aG gpio,spi USER)"
    if isinstance(exc, GPIOPinInUse):
        return f"{text} (the pin is in use by another part or program: choose another pin)"
    if isinstance(exc, PinPWMUnsupported):
        factory = type(Device.pin_factory).__name__
        if factory == "MockFactory":
            fix = "GPIOZERO_MOCK_PIN_CLASS=mockpwmpin gives the mock pins PWM"
        else:
            fix = "use a PWM-capable pin factory: sudo apt install python3-lgpio"
        return f"the pin factory {factory} has no PWM ({fix})"
    if isinstance(exc, BadPinFactory):
        chosen = os.environ.get("GPIOZERO_PIN_FACTORY")
        if chosen:
            return f"GPIOZERO_PIN_FACTORY={chosen}: {exc} (lgpio, native, mock, ...)"
        return f"no GPIO pin factory ({exc}): {NO_PIN_FACTORY_FIX}"
    return text


NO_PIN_FACTORY_FIX = (
    "not a Raspberry Pi, or lgpio missing: sudo apt install python3-lgpio; to try without pins: "
    "GPIOZERO_PIN_FACTORY=mock GPIOZERO_MOCK_PIN_CLASS=mockpwmpin"
)
