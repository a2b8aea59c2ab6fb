"""`edge-agent run`: the daemon. Real devices (or WAV files), LiveSession, Agent, until a signal."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from edge_agent.assembly import assemble
from edge_agent.audio.capture import FILE_PREFIX, Microphone, WavMicrophone
from edge_agent.audio.devices import DeviceNotFound
from edge_agent.audio.playback import PortAudioOutput, Speaker, WavOutput
from edge_agent.config import Config
from edge_agent.credentials import HOW_TO_SET, Credential, find_api_key, run_token_command
from edge_agent.errors import UserError
from edge_agent.gpio import start_gpio
from edge_agent.live.session import KeyProvider
from edge_agent.metrics import start_metrics
from edge_agent.service import Notifier, Watchdog

log = logging.getLogger(__name__)


def key_provider(config: Config, emulator: bool) -> KeyProvider:
    """Checked before any device opens: no key is a user error (exit 2)."""
    if config.live.token_command:
        command = config.live.token_command
        return lambda: run_token_command(command)
    key = find_api_key()
    if key is None:
        if emulator:
            key = Credential("emulator", "built-in emulator")
        else:
            raise UserError(f"no Gemini API key: {HOW_TO_SET}")
    log.info("api key from %s", key.source)
    return lambda: key


@contextlib.asynccontextmanager
async def maybe_emulator(config: Config, wanted: bool) -> AsyncIterator[Config]:
    if not wanted:
        yield config
        return
    from edge_agent.emulator.server import Emulator, EmulatorOptions

    with tempfile.TemporaryDirectory(prefix="edge-agent-emulator-") as cert_dir:
        async with Emulator(EmulatorOptions(cert_dir=Path(cert_dir))) as emulator:
            log.info("built-in emulator on %s", emulator.url)
            live = config.live.model_copy(
                update={"endpoint": emulator.url, "ca_file": str(emulator.cert_path)}
            )
            yield config.model_copy(update={"live": live})


def open_output(config: Config) -> tuple[PortAudioOutput | WavOutput, int]:
    spec = config.audio.output_device
    if spec.startswith(FILE_PREFIX):
        return WavOutput(Path(spec[len(FILE_PREFIX) :]), config.audio.period_ms), 24000
    output = PortAudioOutput(spec, config.audio.output_rate, period_ms=config.audio.period_ms)
    return output, output.probe_rate()


STOP_BOUND_S = 5.0  # a graceful stop takes at most this long
ConfigLoader = Callable[[], Config]


async def run_daemon(
    config: Config,
    use_emulator: bool,
    stop: asyncio.Event | None = None,
    reload: ConfigLoader | None = None,
) -> int:
    """Runs until SIGINT/SIGTERM (or `stop`); SIGHUP reloads. Exit 2 problems raise UserError."""
    keys = key_provider(config, use_emulator)
    notifier = Notifier()
    stop = stop or asyncio.Event()
    reloading = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = {signal.SIGINT: stop.set, signal.SIGTERM: stop.set, signal.SIGHUP: reloading.set}
    for signum, handler in signals.items():
        loop.add_signal_handler(signum, handler)
    try:
        while True:
            async with maybe_emulator(config, use_emulator) as running:
                outcome = await _run(running, keys, stop, reloading, notifier)
            if outcome == "stop" or reload is None:
                return 0
            reloading.clear()
            try:
                config = reload()
                keys = key_provider(config, use_emulator)
                log.info("configuration reloaded")
            except UserError as exc:
                log.error("reload refused, keeping the running configuration: %s", exc)
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)


async def _run(
    config: Config,
    keys: KeyProvider,
    stop: asyncio.Event,
    reloading: asyncio.Event,
    notifier: Notifier,
) -> str:
    """Runs the agent until it must stop ("stop") or reload its configuration ("reload")."""
    started = time.monotonic()

    def clock() -> float:
        return time.monotonic() - started

    try:
        output, rate = open_output(config)
    except (DeviceNotFound, OSError) as exc:
        raise UserError(f"speaker: {exc}") from None
    speaker = Speaker(
        rate,
        config.audio.jitter_ms,
        config.audio.volume,
        clock=clock,
        idle_stop_s=config.audio.speaker_idle_stop_s,
    )
    parts = assemble(config, speaker, clock, keys, Path(config.service.state_dir))
    agent = parts.agent
    agent.state_listeners.append(lambda state: log.info("state: %s", state.value))
    agent.state_listeners.append(lambda state: notifier.status(state.value))
    mic = _open_microphone(config)
    try:
        mic.start(parts.on_mic_frame)
        output.start(speaker)
    except (DeviceNotFound, OSError) as exc:
        await mic.close()
        output.close()
        raise UserError(f"audio device: {exc}") from None
    button, lights = start_gpio(config.gpio, agent.on_button)
    if lights is not None:
        agent.state_listeners.append(lambda state: lights.show(state.value))
        camera = parts.camera

        def privacy(*_: object) -> None:  # lit while the microphone uplink or the camera is live
            lights.privacy(parts.conversation.is_open or bool(camera and camera.window_open))

        parts.conversation.listeners.append(privacy)
        if camera is not None:
            camera.streaming_listeners.append(privacy)
    metrics = start_metrics(agent, parts.conversation.budget, config.service.metrics_port)
    agent.start()
    notifier.ready(agent.state.value)  # local parts are up; the network is not awaited
    watchdog = asyncio.create_task(
        Watchdog(notifier, {"microphone": mic.alive, "speaker": output.alive}).run()
    )
    waits: list[asyncio.Future[Any]] = [
        parts.link.failure,
        asyncio.ensure_future(stop.wait()),
        asyncio.ensure_future(reloading.wait()),
    ]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        if parts.link.failure.done():
            raise UserError(str(parts.link.failure.result()))
    finally:
        outcome = "reload" if reloading.is_set() and not stop.is_set() else "stop"
        if outcome == "reload":
            notifier.reloading()
            log.info("reloading the configuration")
        else:
            notifier.stopping()
            log.info("stopping")
        for waiting in [*waits[1:], watchdog]:
            waiting.cancel()
        try:
            async with asyncio.timeout(STOP_BOUND_S):
                await parts.link.shutdown()
                await mic.close()
        except TimeoutError:
            log.warning("stop took longer than %.0f s; leaving anyway", STOP_BOUND_S)
        output.close()
        for part in (button, lights, metrics, parts.camera):
            if part is not None:
                part.close()
    return outcome


def _open_microphone(config: Config) -> Any:
    spec = config.audio.input_device
    if spec.startswith(FILE_PREFIX):
        try:
            return WavMicrophone(Path(spec[len(FILE_PREFIX) :]), config.vad.frame_ms)
        except DeviceNotFound as exc:
            raise UserError(f"microphone: {exc}") from None
    return Microphone(spec, config.vad.frame_ms, config.audio.input_rate)
