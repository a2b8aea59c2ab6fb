"""`edge-agent run`: the daemon. Real devices (or WAV files), LiveSession, Agent, until a signal."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

from edge_agent.agent import Agent
from edge_agent.assembly import assemble
from edge_agent.audio.capture import FILE_PREFIX, Microphone, WavMicrophone
from edge_agent.audio.devices import DeviceNotFound
from edge_agent.audio.playback import PortAudioOutput, Speaker, WavOutput
from edge_agent.config import Config
from edge_agent.credentials import KeyProvider
from edge_agent.errors import EXIT_INTERRUPTED, UserError
from edge_agent.events import AgentEvent, State, StateChanged
from edge_agent.gpio import start_gpio
from edge_agent.live.probe import ProbeResult
from edge_agent.live.session import load_sdk
from edge_agent.metrics import start_metrics
from edge_agent.reachability import Reachability
from edge_agent.service import Notifier, Watchdog
from edge_agent.startup import EMULATOR_KEY, check_service, key_provider

log = logging.getLogger(__name__)
# no conversation under way: the microphone may wake the loop a few frames at a time
RESTING = tuple(state.value for state in (State.IDLE, State.MUTED, State.OFFLINE, State.ERROR))


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


def check_web(config: Config) -> None:
    if config.web.enabled:  # the page's package is imported only when configured
        from edge_agent.web import check

        check(config.web)


def check_mqtt(config: Config) -> None:
    if config.mqtt.enabled:  # nothing of MQTT is imported unless configured
        from edge_agent.mqtt import check

        check(config.mqtt)


STOP_BOUND_S = 5.0  # a graceful stop takes at most this long
ConfigLoader = Callable[[], Config]


async def run_daemon(
    config: Config,
    use_emulator: bool,
    stop: asyncio.Event | None = None,
    reload: ConfigLoader | None = None,
) -> int:
    """Runs until SIGTERM or `stop` (exit 0) or SIGINT (130); SIGHUP reloads. Exit 2 problems
    raise UserError, only before READY."""
    fallback = EMULATOR_KEY if use_emulator else None
    keys = key_provider(config, fallback)
    check_web(config)
    check_mqtt(config)
    notifier = Notifier()
    stop = stop or asyncio.Event()
    reloading = asyncio.Event()
    interrupted = asyncio.Event()

    def on_sigint() -> None:
        interrupted.set()
        stop.set()

    loop = asyncio.get_running_loop()
    signals = {signal.SIGINT: on_sigint, signal.SIGTERM: stop.set, signal.SIGHUP: reloading.set}
    for signum, handler in signals.items():
        loop.add_signal_handler(signum, handler)

    def try_reload() -> tuple[Config, KeyProvider] | None:
        """A refused or unchanged file changes nothing."""
        if reload is None:
            return None
        try:
            new = reload()
            new_keys = key_provider(new, fallback)
            check_web(new)
            check_mqtt(new)
            if new.conversation.start == "wake_word":
                from edge_agent.wakeword import check_models

                check_models(new.wake_word)  # a bad model file refuses the reload
        except UserError as exc:
            log.error("reload refused, keeping the running configuration: %s", exc)
            return None
        if new == config:
            log.info("reload: the configuration is unchanged")
            return None
        return new, new_keys

    first = True
    try:
        while True:
            async with maybe_emulator(config, use_emulator) as running:
                if first:
                    reachable = await check_service(running, keys)
                    first = False
                changed = await _run(
                    running, keys, stop, reloading, notifier, try_reload, reachable
                )
            if changed is None:
                return EXIT_INTERRUPTED if interrupted.is_set() else 0
            config, keys = changed
            log.info("configuration reloaded")
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)


Reloader = Callable[[], tuple[Config, KeyProvider] | None]


async def _run(
    config: Config,
    keys: KeyProvider,
    stop: asyncio.Event,
    reloading: asyncio.Event,
    notifier: Notifier,
    try_reload: Reloader,
    reachable: ProbeResult,
) -> tuple[Config, KeyProvider] | None:
    """Runs the agent until it must stop (None) or restart with a reloaded configuration."""
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
    _on_state(agent, lambda state: log.debug("state: %s", state))
    _on_state(agent, notifier.status)
    mic = _open_microphone(config)
    mic.rest(agent.state.value in RESTING)
    _on_state(agent, lambda state: mic.rest(state in RESTING))
    try:
        try:
            mic.start(parts.on_mic_frame)
            output.start(speaker)
        except (DeviceNotFound, OSError) as exc:
            raise UserError(f"audio device: {exc}") from None
        button, lights = start_gpio(config.gpio, agent.on_button)
    except BaseException:  # an exit 2 before READY: its one line is all that follows
        await mic.close()
        output.close()
        raise
    if lights is not None:
        _on_state(agent, lights.show)
        camera = parts.camera

        def privacy(*_: object) -> None:  # lit while the microphone uplink or the camera is live
            lights.privacy(parts.conversation.listening or bool(camera and camera.window_open))

        parts.conversation.listeners.append(privacy)
        if camera is not None:
            camera.streaming_listeners.append(privacy)
    service = config.service
    metrics = start_metrics(
        agent,
        parts.conversation.budget,
        service.metrics_port,
        service.metrics_address,
        parts.timers,
    )
    agent.start()
    if parts.timers is not None:
        parts.timers.start()  # what fell due while the daemon was down rings now
    probe = Reachability(config, keys, agent, parts.conversation)
    probe.start(reachable)
    notifier.ready(agent.state.value)  # local parts are up; the network is not awaited
    sdk = asyncio.create_task(load_sdk(config))  # off the loop, after READY: a turn meanwhile waits
    web = None
    if config.web.enabled:
        from edge_agent.web import Page

        web = Page(config.web, agent, parts.volume, parts.timers)  # starts in the background
    if parts.mcp is not None:
        parts.mcp.start()  # MCP servers connect in the background, after READY
    mqtt = None
    if config.mqtt.enabled:
        from edge_agent.mqtt import Bridge

        mqtt = Bridge(config, agent, parts.volume, parts.timers, reachable.verdict != "unreachable")
    watchdog = asyncio.create_task(
        Watchdog(notifier, {"microphone": mic.alive, "speaker": output.alive}).run()
    )
    changed = None
    try:
        while changed is None and not stop.is_set():
            await _first_of(stop.wait(), reloading.wait())
            if reloading.is_set() and not stop.is_set():
                reloading.clear()
                changed = try_reload()
        if changed is not None:
            await _first_of(stop.wait(), _until_idle(agent))  # let the answer finish
    finally:
        if changed is not None and not stop.is_set():
            notifier.reloading()
            log.info("reloading the configuration")
        else:
            changed = None
            notifier.stopping()
            log.info("stopping")
        for task in (watchdog, sdk):
            task.cancel()
        probe.close()
        parts.conversation.remember_on_exit()
        try:
            async with asyncio.timeout(STOP_BOUND_S):
                if mqtt is not None:  # "offline" first, while the agent still stands
                    await mqtt.close()
                if web is not None:
                    await web.close()
                await parts.link.shutdown()
                await mic.close()
                if parts.mcp is not None:
                    await parts.mcp.close()
        except TimeoutError:
            log.warning("stop took longer than %.0f s; leaving anyway", STOP_BOUND_S)
        output.close()
        for part in (button, lights, metrics, parts.camera):
            if part is not None:
                part.close()
    return changed


async def _first_of(*waits: Coroutine[Any, Any, Any]) -> None:
    tasks = [asyncio.ensure_future(wait) for wait in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


def _on_state(agent: Agent, act: Callable[[str], None]) -> None:
    """act(state) on each of the Agent's new states."""

    def on_event(event: AgentEvent) -> None:
        if isinstance(event, StateChanged):
            act(event.state)

    agent.listeners.append(on_event)


async def _until_idle(agent: Agent) -> None:
    while agent.busy:
        await asyncio.sleep(0.1)


def _open_microphone(config: Config) -> WavMicrophone | Microphone:
    spec = config.audio.input_device
    if spec.startswith(FILE_PREFIX):
        try:
            return WavMicrophone(Path(spec[len(FILE_PREFIX) :]), config.vad.frame_ms)
        except DeviceNotFound as exc:
            raise UserError(f"microphone: {exc}") from None
    return Microphone(spec, config.vad.frame_ms, config.audio.input_rate)
