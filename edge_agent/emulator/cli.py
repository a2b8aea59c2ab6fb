"""`edge-agent emulator --host H --port P --cert-dir D [--scenario F] [--log F] [faults]`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_agent.errors import UserError

if TYPE_CHECKING:
    from edge_agent.emulator.server import EmulatorOptions


def add_emulator_command(commands: Any) -> None:
    parser = commands.add_parser("emulator", help="run the local Live API emulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 = any free port")
    parser.add_argument("--cert-dir", default=".", help="where cert.pem (the CA to trust) goes")
    parser.add_argument("--scenario", metavar="F", help="scripted turns (JSON, see README)")
    parser.add_argument("--log", metavar="F", help="JSON lines of every message in and out")
    parser.add_argument("--api-key", default="", help="accept only this key (default: any)")
    parser.add_argument(
        "--reject-model",
        action="append",
        default=[],
        metavar="NAME",
        help="refuse this model as the service refuses an unknown one",
    )
    parser.add_argument(
        "--any-model",
        action="store_true",
        help="accept models the emulator does not know (they accept every option)",
    )
    faults = parser.add_argument_group("faults")
    faults.add_argument(
        "--goaway-every",
        type=float,
        default=0.0,
        metavar="S",
        help="send goAway S wall seconds into each connection (instead of near its 10 min end)",
    )
    faults.add_argument(
        "--goaway-time-left",
        type=float,
        default=50.0,
        metavar="S",
        help="goAway timeLeft (scaled seconds)",
    )
    faults.add_argument(
        "--drop-every",
        type=float,
        default=0.0,
        metavar="S",
        help="cut every connection (no close frame) every S wall seconds",
    )
    faults.add_argument("--latency-ms", type=int, default=0, help="delay before each answer")
    faults.add_argument("--no-setup-complete", action="store_true", help="never answer the setup")
    faults.add_argument(
        "--silent-after-goaway", action="store_true", help="after goAway, neither answer nor close"
    )
    faults.add_argument(
        "--clock-scale",
        type=float,
        default=1.0,
        metavar="X",
        help="session limits and goAway timeLeft run X times faster",
    )
    parser.set_defaults(command=cmd_emulator)


def options_from_args(args: argparse.Namespace) -> EmulatorOptions:
    from edge_agent.emulator.scenario import load_scenario
    from edge_agent.emulator.server import EmulatorOptions

    return EmulatorOptions(
        host=args.host,
        port=args.port,
        cert_dir=Path(args.cert_dir),
        api_key=args.api_key,
        reject_models=tuple(args.reject_model),
        any_model=args.any_model,
        scenario=load_scenario(args.scenario),
        log_path=Path(args.log) if args.log else None,
        goaway_every=args.goaway_every,
        goaway_time_left_s=args.goaway_time_left,
        drop_every=args.drop_every,
        latency_ms=args.latency_ms,
        no_setup_complete=args.no_setup_complete,
        silent_after_goaway=args.silent_after_goaway,
        clock_scale=args.clock_scale,
    )


def cmd_emulator(args: argparse.Namespace) -> int:
    options = options_from_args(args)
    asyncio.run(_serve(options))
    return 0


async def _serve(options: EmulatorOptions) -> None:
    from edge_agent.emulator.server import Emulator

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    emulator = Emulator(options)
    try:
        await emulator.start()
    except OSError as exc:
        where = f"{options.host}:{options.port}"
        raise UserError(f"emulator: cannot listen on {where}: {exc.strerror or exc}") from None
    try:
        print(f"listening on {emulator.url} (trust {emulator.cert_path})", flush=True)
        await stop.wait()
    finally:
        await emulator.stop()
