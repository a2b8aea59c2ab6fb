"""`edge-agent run | simulate | emulator | check | test-audio | devices | token | announce`
(see docs/interface.md)."""

from __future__ import annotations

import argparse
import glob
import importlib.util
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import tomli_w

from edge_agent import __version__
from edge_agent.config import SYSTEM_CONFIG, Config, LoadedConfig, ServiceConfig, load_config
from edge_agent.credentials import HOW_TO_SET, find_api_key
from edge_agent.errors import EXIT_INTERRUPTED, EXIT_USER_ERROR, UserError

Command = Callable[[argparse.Namespace], int]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    command: Command = args.command
    try:
        return command(args)
    except UserError as exc:
        print(f"edge-agent: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `edge-agent check | head`: the reader has all it wanted
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-agent", description="A Raspberry Pi voice agent on the Gemini Live API."
    )
    parser.add_argument("--version", action="version", version=f"edge-agent {__version__}")
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="the daemon: listen, talk, answer")
    run.add_argument("--config", metavar="F", help="config file (TOML)")
    run.add_argument(
        "--emulator",
        action="store_true",
        help="start the built-in Live API emulator and use it (no key needed)",
    )
    run.set_defaults(command=cmd_run)

    simulate = commands.add_parser(
        "simulate", help="the whole agent with a WAV microphone and a WAV speaker"
    )
    simulate.add_argument("--config", metavar="F", help="config file (TOML)")
    simulate.add_argument(
        "--input",
        metavar="WAV",
        help="what the microphone hears (default: a short spoken question)",
    )
    simulate.add_argument("--output", metavar="WAV", help="what the speaker plays (24 kHz)")
    simulate.add_argument("--realtime", action="store_true", help="run on the wall clock")
    simulate.add_argument("--json", action="store_true", help="print the summary as JSON")
    simulate.add_argument(
        "--endpoint", metavar="URL", help="a Live API endpoint (default: the built-in emulator)"
    )
    simulate.add_argument("--ca-file", metavar="F", help="CA to trust for --endpoint")
    simulate.add_argument(
        "--ptt",
        metavar="SPANS",
        default="",
        help='hold the button during these input spans: "1.0-3.2,6.0-8.5"',
    )
    simulate.add_argument(
        "--echo", metavar="GAIN@MS", help="mix the speaker back into the mic: GAIN after MS"
    )
    simulate.add_argument(
        "--start-time",
        metavar="TIME",
        help="the local time at the input's start: 2026-12-07T07:59:50",
    )
    simulate.add_argument(
        "--scenario", metavar="F", help="scripted answers for the built-in emulator (emulator.md)"
    )
    simulate.set_defaults(command=cmd_simulate)

    check = commands.add_parser(
        "check", help="validate the config and print it (secrets redacted); opens no device"
    )
    check.add_argument("--config", metavar="F", help="config file (TOML)")
    check.add_argument(
        "--online",
        action="store_true",
        help="also ask the service whether it takes key and model, and list MCP servers' tools",
    )
    check.add_argument(
        "--credentials",
        action="store_true",
        help="only print the systemd credentials the config reads (besides the key), one a line",
    )
    check.set_defaults(command=cmd_check)

    test_audio = commands.add_parser(
        "test-audio",
        help="record from the microphone, show its level and what the speech gate hears, "
        "play it back and a tone; says what is wrong",
    )
    test_audio.add_argument("--config", metavar="F", help="config file (TOML)")
    test_audio.add_argument(
        "--seconds", type=float, default=4.0, metavar="S", help="how long to record (default 4)"
    )
    test_audio.set_defaults(command=cmd_test_audio)

    devices = commands.add_parser(
        "devices", help="list audio inputs/outputs, cameras and the GPIO pin factory"
    )
    devices.set_defaults(command=cmd_devices)

    token = commands.add_parser(
        "token", help="mint an ephemeral token from a real key (run on a trusted machine)"
    )
    token.add_argument("--config", metavar="F", help="config file (TOML)")
    token.add_argument("--uses", type=int, default=1, help="sessions it may start (0 = any)")
    token.add_argument("--expire-minutes", type=float, default=30.0, metavar="M")
    token.set_defaults(command=cmd_token)

    announce = commands.add_parser(
        "announce", help="have the running daemon read a text aloud (needs [web] enabled)"
    )
    announce.add_argument("text", help="what to read out, 1..1000 characters")
    announce.add_argument("--no-chime", action="store_true", help="no chime before it")
    announce.add_argument("--config", metavar="F", help="config file (TOML): the page's address")
    announce.set_defaults(command=cmd_announce)

    from edge_agent.emulator.cli import add_emulator_command

    add_emulator_command(commands)
    return parser


def cmd_run(args: argparse.Namespace) -> int:
    import asyncio

    from edge_agent.daemon import run_daemon
    from edge_agent.logs import configure_logging
    from edge_agent.service import limit_malloc_arenas

    limit_malloc_arenas()
    config = load_config(args.config).config
    configure_logging(config.service.log_format, config.service.log_level)
    reload = lambda: load_config(args.config).config  # noqa: E731
    return asyncio.run(run_daemon(config, args.emulator, reload=reload))


def cmd_simulate(args: argparse.Namespace) -> int:
    import asyncio
    from pathlib import Path

    from edge_agent.logs import configure_logging
    from edge_agent.simulate import (
        SAMPLE_QUESTION,
        SimulateOptions,
        dump,
        exit_code,
        format_summary,
        parse_echo,
        parse_ptt,
        parse_start_time,
        simulate,
    )

    loaded = load_config(args.config)
    config = loaded.config
    configure_logging(config.service.log_format, config.service.log_level)  # on stderr
    if args.endpoint:
        live = config.live.model_copy(
            update={"endpoint": args.endpoint, "ca_file": args.ca_file or ""}
        )
        config = config.model_copy(update={"live": live})
    gain, delay = parse_echo(args.echo) if args.echo else (0.0, 0.0)
    options = SimulateOptions(
        input=Path(args.input) if args.input else SAMPLE_QUESTION,
        output=Path(args.output) if args.output else None,
        realtime=args.realtime,
        ptt_spans=parse_ptt(args.ptt),
        echo_gain=gain,
        echo_delay_ms=delay,
        state_dir=own_state_dir(loaded),
        start_time=parse_start_time(args.start_time) if args.start_time else None,
        scenario=Path(args.scenario) if args.scenario else None,
    )
    if options.output is not None:  # found out now, not after the whole run
        folder = options.output.parent
        if not folder.is_dir():
            raise UserError(f"--output: no directory {folder}")
        if options.output.is_dir():
            raise UserError(f"--output: {options.output} is a directory")
        if not os.access(folder, os.W_OK):
            raise UserError(f"--output: {folder} is not writable")
    ptt_config = config.turns.mode == "push_to_talk" or config.conversation.start == "button"
    if options.ptt_spans and not ptt_config:
        print(
            "edge-agent: warning: --ptt presses the button, which in this config only "
            "interrupts answers (see config/push-to-talk.toml)",
            file=sys.stderr,
        )
    from edge_agent.audio.devices import DeviceNotFound

    try:
        summary = asyncio.run(simulate(config, options))
    except DeviceNotFound as exc:
        raise UserError(f"--input: {exc}") from None
    print(dump(summary) if args.json else format_summary(summary))
    return exit_code(config, summary)


def own_state_dir(loaded: LoadedConfig) -> Path | None:
    """simulate keeps its state (daily budget, resumption) where the user's own file says; the
    default (or the daemon's config) would share the daemon's. None: a temporary one."""
    service = loaded.config.service
    default = ServiceConfig().state_dir
    if "state_dir" not in service.model_fields_set or service.state_dir == default:
        return None
    if loaded.source in ("packaged default", str(SYSTEM_CONFIG)):
        return None
    return Path(service.state_dir)


def cmd_check(args: argparse.Namespace) -> int:
    from edge_agent.live.models import compatibility_warnings, effective_api_version

    loaded = load_config(args.config)
    config = loaded.config
    if args.credentials:  # for hardware/setup-pi.sh: LoadCredential= for each
        for name in config.credential_names():
            print(name)
        return 0
    warnings = check_warnings(config, args.online)  # a UserError for what `run` refuses
    key = find_api_key()
    if config.live.token_command:
        key_line = "ephemeral tokens from [live] token_command"
    elif key is not None:
        key_line = f"from {key.source} (set, not shown)"
    else:
        key_line = f"none found: {HOW_TO_SET}"
    print(f"# config: {loaded.source}")
    print(f"# api key: {key_line}")
    print(f"# api version in use: {effective_api_version(config)}")
    if config.mcp.servers:
        from edge_agent.tools.mcp_source import check_lines

        print("\n".join(check_lines(config.mcp.servers, online=args.online)))
    if config.mqtt.enabled:
        from edge_agent.mqtt import check_lines as mqtt_lines

        print("\n".join(mqtt_lines(config.mqtt)))
    print(tomli_w.dumps(config.model_dump()), end="")
    for warning in warnings + compatibility_warnings(config):
        print(f"edge-agent: warning: {warning}", file=sys.stderr)
    if args.online:
        return _check_online(config)
    return 0


def check_warnings(config: Config, online: bool = False) -> list[str]:
    """What `run` would refuse (a UserError, with run's own line) or run without."""
    from edge_agent.assembly import available_tools
    from edge_agent.live.models import KNOWN_MODELS, traits
    from edge_agent.tools.registry import missing_tools

    if config.conversation.start == "wake_word":
        from edge_agent.wakeword import check_models

        check_models(config.wake_word)
    warnings = []
    if traits(config.live.model) is None:
        ask = "" if online else "; `edge-agent check --online` asks the service whether it is one"
        warnings.append(
            f"[live] model {config.live.model!r} is not a known model "
            f"({', '.join(KNOWN_MODELS)}){ask}"
        )
    wanted = config.tools.wanted(config.timers.enabled)
    warnings += missing_tools(wanted, available_tools(config))
    if config.camera.source == "files":
        from edge_agent.camera import CameraUnavailable, FilesSource

        try:
            FilesSource(config.camera.path).open()
        except CameraUnavailable as exc:
            warnings.append(f"[camera] path: {exc}; the camera sends nothing until some are there")
    return warnings


def _check_online(config: Config) -> int:
    """The start-up check on demand, then the setup itself: exit 2 when the key, the model or
    the setup is refused."""
    import asyncio

    from edge_agent.assembly import available_tools
    from edge_agent.startup import check_service, key_provider, try_setup

    keys = key_provider(config)
    result = asyncio.run(check_service(config, keys))
    detail = f" ({result.detail})" if result.detail else ""
    print(f"# service: {result.verdict}{detail}", flush=True)
    if result.verdict == "unreachable":
        return 0  # as `run`: it starts offline
    setup = asyncio.run(
        try_setup(config, keys, available_tools(config))
    )  # a refused one: exit 2, its one line
    if setup.verdict == "ok":
        print(f"# setup: taken by {config.live.model}")
    else:
        print(f"# setup: not tried to the end ({setup.detail})")
    return 0


def cmd_test_audio(args: argparse.Namespace) -> int:
    import asyncio

    from edge_agent.audio.check import test_audio
    from edge_agent.logs import configure_logging

    config = load_config(args.config).config
    configure_logging(config.service.log_format, "warning")
    if not 0 < args.seconds <= 60:
        raise UserError(f"--seconds: more than 0 and at most 60 (got {args.seconds:g})")

    def say(line: str) -> None:
        print(line, flush=True)

    report = asyncio.run(test_audio(config, args.seconds, say))
    for note in report.notes:
        say(f"note: {note}")
    for problem in report.problems:
        say(f"problem: {problem}")
    if report.problems:
        return EXIT_USER_ERROR
    say("ok: the microphone hears and the speaker plays (listen for your voice, then a tone)")
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    from edge_agent.live.tokens import mint_token

    config = load_config(args.config).config
    print(mint_token(config, args.uses, args.expire_minutes))
    return 0


def cmd_announce(args: argparse.Namespace) -> int:
    """0 queued, 1 refused by the daemon (its reason on stderr), 2 no daemon or bad input."""
    from edge_agent.web.client import announce

    config = load_config(args.config).config
    answer = announce(config.web, args.text, not args.no_chime)
    if not answer.queued:
        print(f"edge-agent: not queued: {answer.reason}", file=sys.stderr)
        return 1
    print("queued")
    return 0


def cmd_devices(args: argparse.Namespace) -> int:
    from edge_agent.audio.devices import (
        Direction,
        default_device_index,
        list_devices,
        open_portaudio,
    )

    pa = open_portaudio()
    try:
        devices = list_devices(pa)
        defaults = {
            "input": default_device_index(pa, "input"),
            "output": default_device_index(pa, "output"),
        }
    finally:
        pa.terminate()
    directions: tuple[Direction, ...] = ("input", "output")
    for direction in directions:
        print(f"audio {direction}s:")
        usable = [d for d in devices if d.channels(direction) > 0]
        for d in usable:
            mark = "*" if d.index == defaults[direction] else " "
            print(
                f" {mark}{d.index:3d}  {d.name}  ({d.channels(direction)} ch, "
                f"{d.default_rate} Hz, {d.host_api})"
            )
        if not usable:
            print("    none")
    print("cameras:")
    video = sorted(glob.glob("/dev/video*"))
    print(f"    V4L2 devices: {', '.join(video) if video else 'none'}")
    picamera2 = importlib.util.find_spec("picamera2") is not None
    status = "installed" if picamera2 else "not installed (apt: python3-picamera2)"
    print(f"    picamera2: {status}")
    print(f"gpio pin factory: {_pin_factory_name()}")
    return 0


def _pin_factory_name() -> str:
    try:
        from gpiozero.exc import BadPinFactory
    except ImportError:
        return "gpiozero not installed"
    from edge_agent.gpio import NO_PIN_FACTORY_FIX, describe, load_pin_factory

    chosen = os.environ.get("GPIOZERO_PIN_FACTORY")
    try:
        factory, fallbacks = load_pin_factory()
    except BadPinFactory as exc:
        return describe(exc) if chosen else f"none usable ({exc}): {NO_PIN_FACTORY_FIX}"
    name = type(factory).__name__
    factory.close()
    if chosen:
        return f"{name} (GPIOZERO_PIN_FACTORY={chosen})"
    return f"{name} ({'; '.join(fallbacks)})" if fallbacks else name
