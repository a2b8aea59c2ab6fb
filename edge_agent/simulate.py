"""`edge-agent simulate`: the whole agent with a WAV microphone and a WAV speaker.

A virtual sound card runs capture and playback in lockstep, one VAD frame per tick. Without
--realtime the clock runs as fast as the machine allows, except while the agent waits on the
service (connecting, or an answer not yet buffered): then it ticks at real-time pace, so the
service's latency lands on the timeline as it would on a device.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_agent.agent import Agent
from edge_agent.assembly import assemble
from edge_agent.audio import pcm
from edge_agent.audio.capture import WavMicrophone
from edge_agent.audio.playback import Speaker, open_wav_writer
from edge_agent.audio.resample import MODEL_OUTPUT_RATE, Resampler
from edge_agent.config import Config
from edge_agent.conversation import DailyBudget
from edge_agent.credentials import KeyProvider
from edge_agent.errors import UserError
from edge_agent.events import AgentEvent, State, TimerChanged
from edge_agent.startup import EMULATOR_KEY, check_service, key_provider
from edge_agent.timers.clock import local_zone
from edge_agent.turns import Tokens

log = logging.getLogger(__name__)

TAIL_LIMIT_S = 60.0  # after the input ends, wait at most this long for answers to finish
MCP_SETTLE_S = 30.0  # at most this long for MCP servers to be tried before the input starts
SAMPLE_QUESTION = Path(__file__).parent / "data" / "question.wav"


@dataclass
class SimulateOptions:
    input: Path
    output: Path | None = None
    realtime: bool = False
    ptt_spans: tuple[tuple[float, float], ...] = ()
    echo_gain: float = 0.0
    echo_delay_ms: float = 0.0
    tail_limit_s: float = TAIL_LIMIT_S  # after the input, wait this long at most for answers
    state_dir: Path | None = None  # None: a temporary one (not the daemon's)
    start_time: dt.datetime | None = None  # the local time at the input's first sample
    scenario: Path | None = None  # scripted answers for the built-in emulator


def parse_ptt(text: str) -> tuple[tuple[float, float], ...]:
    spans = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            start, end = (float(v) for v in part.split("-"))
        except ValueError:
            raise UserError(f"--ptt: {part!r} is not START-END in seconds") from None
        if end <= start:
            raise UserError(f"--ptt: span {part!r} ends before it starts")
        spans.append((start, end))
    return tuple(sorted(spans))


def parse_start_time(text: str) -> dt.datetime:
    """ "2026-12-07T07:59:50": a local time (or one with its offset)."""
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise UserError(f"--start-time: {text!r} is not a time like 2026-12-07T07:59:50") from None
    return when if when.tzinfo else when.replace(tzinfo=local_zone())


def parse_echo(text: str) -> tuple[float, float]:
    try:
        gain, delay = text.split("@")
        return float(gain), float(delay)
    except ValueError:
        raise UserError(f"--echo: {text!r} is not GAIN@MS (e.g. 0.3@40)") from None


class VirtualSoundCard:
    """One tick: a mic frame in (with the speaker's echo if asked), one period out."""

    def __init__(self, mic: WavMicrophone, speaker: Speaker, options: SimulateOptions) -> None:
        self.mic = mic
        self.speaker = speaker
        self.frame_samples = mic.frame_samples
        self.out_samples = self.frame_samples * MODEL_OUTPUT_RATE // 16000
        self.echo_gain = options.echo_gain
        delay = int(options.echo_delay_ms * 16)
        self._echo_line = np.zeros(delay, dtype=np.int16)
        self._to_16k = Resampler(MODEL_OUTPUT_RATE, 16000)
        self.output: list[bytes] = []
        self.ticks = 0

    @property
    def now(self) -> float:
        return self.ticks * self.frame_samples / 16000

    def tick(self) -> bytes:
        frame = np.frombuffer(self.mic.next_frame(), dtype=np.int16)
        played = self.speaker.pull(self.out_samples)
        self.output.append(played)
        if self.echo_gain:
            self._echo_line = np.concatenate(
                [self._echo_line, np.frombuffer(self._to_16k.process(played), dtype="<i2")]
            )
            echo = self._echo_line[: self.frame_samples]
            self._echo_line = self._echo_line[len(echo) :]
            mixed = frame.astype(np.int32)
            mixed[: len(echo)] += (echo * self.echo_gain).astype(np.int32)
            frame = np.clip(mixed, -32768, 32767).astype(np.int16)
        self.ticks += 1
        return frame.tobytes()


async def simulate(config: Config, options: SimulateOptions) -> dict[str, Any]:
    """Runs the agent over the input WAV; returns the contract's JSON summary."""
    if config.live.endpoint:
        return await _simulate_against(config, options)
    from edge_agent.emulator.scenario import load_scenario
    from edge_agent.emulator.server import Emulator, EmulatorOptions

    scenario = load_scenario(str(options.scenario) if options.scenario else None)
    with tempfile.TemporaryDirectory(prefix="edge-agent-emulator-") as cert_dir:
        emulator_options = EmulatorOptions(cert_dir=Path(cert_dir), scenario=scenario)
        async with Emulator(emulator_options) as emulator:
            live = config.live.model_copy(
                update={"endpoint": emulator.url, "ca_file": str(emulator.cert_path)}
            )
            return await _simulate_against(config.model_copy(update={"live": live}), options)


async def _simulate_against(config: Config, options: SimulateOptions) -> dict[str, Any]:
    mic = WavMicrophone(options.input, config.vad.frame_ms)
    keys = key_provider(config, fallback=EMULATOR_KEY)
    reachable = await check_service(config, keys)  # a refused key or model: exit 2
    if reachable.verdict == "unreachable":
        return _summary(None, 0, [f"the service was never reached: {reachable.detail}"])
    with contextlib.ExitStack() as stack:
        state_dir = options.state_dir or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="edge-agent-simulate-"))
        )
        return await _run_parts(config, options, mic, keys, state_dir)


async def _run_parts(
    config: Config,
    options: SimulateOptions,
    mic: WavMicrophone,
    keys: KeyProvider,
    state_dir: Path,
) -> dict[str, Any]:
    card: VirtualSoundCard | None = None
    speaker = Speaker(
        device_rate=MODEL_OUTPUT_RATE,
        jitter_ms=config.audio.jitter_ms,
        volume=config.audio.volume,
        clock=lambda: card.now if card else 0.0,
    )
    card = VirtualSoundCard(mic, speaker, options)
    start = (options.start_time or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)

    def wall() -> dt.datetime:  # local time on the virtual clock, from --start-time or now
        elapsed = dt.timedelta(seconds=card.now if card else 0.0)
        return (start + elapsed).astimezone(local_zone())

    parts = assemble(config, speaker, lambda: card.now if card else 0.0, keys, state_dir, wall)
    timers: list[dict[str, Any]] = []

    def on_timer(event: AgentEvent) -> None:
        if isinstance(event, TimerChanged) and card is not None:
            timer = event.timer
            timers.append({"what": event.what, "kind": timer["kind"], "label": timer["label"],
                           "at_s": round(card.now, 3)})  # fmt: skip

    parts.agent.listeners.append(on_timer)
    try:
        parts.agent.start()
        if parts.timers is not None:  # the virtual clock is as right as the time it was given
            parts.timers.schedule.clock_synced = lambda: True
            parts.timers.start()
        if parts.mcp is not None:  # a simulation starts once MCP servers were tried
            parts.mcp.start()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(MCP_SETTLE_S):
                    await parts.mcp.settled()
        await _drive(parts.agent, parts.on_mic_frame, card, mic, options)
    finally:
        await parts.link.shutdown()
        if parts.mcp is not None:
            await parts.mcp.close()
        if parts.camera is not None:
            parts.camera.close()
    if options.output is not None:
        with options.output.open("wb") as file, open_wav_writer(file, MODEL_OUTPUT_RATE) as wav:
            wav.writeframes(b"".join(card.output))
    ledger = parts.agent.ledger
    errors = list(ledger.errors)
    refused = parts.agent.state is State.ERROR  # told as such (the key or the setup)
    if ledger.records and parts.session.connected_at == 0.0 and not refused:
        errors.append("the service was never reached")
    if not ledger.records:
        errors.append(no_turn(config, options, mic, parts.agent.conversation.budget))
    return _summary(parts.agent, parts.session.reconnects, errors, timers)


NO_TURN = "no turn: "


def waits_for_a_call(config: Config) -> bool:
    """Turns come after a wake word or a press, not from speech alone."""
    start = config.conversation.start
    return start in ("wake_word", "button") or config.turns.mode == "push_to_talk"


def no_turn(
    config: Config, options: SimulateOptions, mic: WavMicrophone, budget: DailyBudget
) -> str:
    """What can be told when the input gave no turn at all."""
    if budget.exhausted:
        return f"{NO_TURN}the daily budget is spent ({budget.spent} of {budget.limit})"
    peak = pcm.peak(mic.pcm)
    level = f"{20 * math.log10(peak / 32768):.1f} dBFS" if peak else "digital silence"
    heard = f"{mic.duration_s:.1f} s of input, peak {level}"
    if config.conversation.start == "wake_word":
        return f"{NO_TURN}no wake word heard in {heard}"
    if waits_for_a_call(config):
        press = "the button was pressed" if options.ptt_spans else "no button press (--ptt)"
        return f"{NO_TURN}{press}; {heard}"
    return f"{NO_TURN}the speech gate heard no speech in {heard}"


def exit_code(config: Config, summary: dict[str, Any]) -> int:
    """1: the service was never reached, a turn was lost, or speech should have opened a turn
    and none did; a wake-word or button config that heard no call is not a failure."""
    excused = waits_for_a_call(config)
    errors = [e for e in summary["errors"] if not (excused and e.startswith(NO_TURN))]
    return 1 if errors else 0


def _summary(
    agent: Agent | None,
    reconnects: int,
    errors: list[str],
    timers: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    tokens = agent.ledger.tokens if agent is not None else Tokens()
    return {
        "turns": [turn.summary() for turn in agent.ledger.records] if agent is not None else [],
        "reconnects": reconnects,
        "errors": errors,
        "tokens": {"prompt": tokens.prompt, "response": tokens.response, "total": tokens.total},
        "timers": timers or [],  # what timers, alarms and reminders did, on the input's clock
    }


async def _drive(
    agent: Agent,
    on_mic_frame: Callable[[bytes], None],
    card: VirtualSoundCard,
    mic: WavMicrophone,
    options: SimulateOptions,
) -> None:
    period = card.frame_samples / 16000
    spans = list(options.ptt_spans)
    started = time.monotonic()
    end_of_input = mic.duration_s
    limit = end_of_input + options.tail_limit_s
    # until the last answer has left the speaker (its turn's line waits for that)
    while card.now < end_of_input or (
        (agent.busy or agent.gate.holding or agent.speaker.speaking) and card.now < limit
    ):
        now = card.now
        while spans and spans[0][0] <= now and not agent.button_held:
            agent.on_button(True)
        if spans and agent.button_held and spans[0][1] <= now:
            agent.on_button(False)
            spans.pop(0)
        on_mic_frame(card.tick())
        if agent.camera is not None and not options.realtime:
            await agent.camera.settle()
        if options.realtime:
            await asyncio.sleep(max(0.0, started + card.now - time.monotonic()))
        elif agent.awaiting_service:
            await asyncio.sleep(period)
        else:
            await asyncio.sleep(0)


def format_summary(summary: dict[str, Any]) -> str:
    lines = []
    for number, turn in enumerate(summary["turns"], 1):
        first = turn["first_audio_ms"]
        answer = f"answered after {first:.0f} ms" if first is not None else "no answer"
        cut = ", interrupted" if turn["interrupted"] else ""
        lines.append(
            f"turn {number}: {turn['start_s']:.2f}-{turn['end_s'] or 0:.2f} s, {answer}{cut}"
        )
        if turn["input_transcript"]:
            lines.append(f"  user:  {turn['input_transcript']}")
        if turn["output_transcript"]:
            lines.append(f"  agent: {turn['output_transcript']}")
    tokens = summary["tokens"]
    lines.append(
        f"reconnects: {summary['reconnects']}, tokens: {tokens['total']} "
        f"({tokens['prompt']} prompt, {tokens['response']} response)"
    )
    lines += [f"error: {error}" for error in summary["errors"]]
    return "\n".join(lines)


def dump(summary: dict[str, Any]) -> str:
    return json.dumps(summary, indent=2)
