"""One `edge-agent run` daemon against a hostile Live API server (tests/hostile_server.py).

Every case is one connection; the connection after it is a good server that answers one turn.
A case passes when the daemon never exited, came back, got that turn answered (the server saw
activityEnd and sent turnComplete; the daemon logged the turn as played) and its memory stayed
under MEMORY_BOUND_MB all along. A daemon that dies is started again for the next case, so one
run reports every case. The microphone is a WAV of short questions, so turns keep coming.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO, write_wav
from tests.hostile_server import CASES, MEGABYTE, HostileServer, Peer, Script, answer_one_turn

MEMORY_BOUND_MB = 400.0
GROWTH_BOUND_MB = 50.0  # retained (USS) growth over one daemon's life; ~125 MB handles pass by
WAV_SECONDS = 240  # questions every ~1.5 s for longer than the whole run
ANSWERED = re.compile(r"turn \d+: .*first sample \+")
WAIT_CONNECTION_S = 30.0  # generous bounds: only a broken daemon reaches them
WAIT_TURN_S = 30.0
WAIT_PLAYED_S = 8.0
CASE_BOUND_S = 60.0


@dataclass
class Outcome:
    name: str
    exit_code: int | None = None
    reconnected: bool = False
    turn_end_seen: bool = False
    answer_sent: bool = False
    answer_played: bool = False
    good_connections: int = 0
    seconds: float = 0.0
    daemon_start: int = 0  # which start of the daemon played the case
    end_uss_mb: float = 0.0  # after the good turn: what the daemon kept
    peak_rss_mb: float = 0.0
    peak_uss_mb: float = 0.0
    log: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"{self.name:30} {self.seconds:4.1f} s  rss {self.peak_rss_mb:4.0f} MB  "
            f"uss {self.peak_uss_mb:4.0f} MB  good connections {self.good_connections}  "
            f"{'; '.join(self.problems) or 'ok'}"
        )

    def judge(self) -> None:
        if self.exit_code is not None:
            self.problems.append(f"the daemon exited with {self.exit_code}")
        elif not self.reconnected:
            self.problems.append("the daemon did not reconnect")
        elif not self.turn_end_seen:
            self.problems.append("the good server saw no activityEnd after the case")
        elif not (self.answer_sent and self.answer_played):
            self.problems.append("the next turn's answer was not played")
        if self.peak_rss_mb > MEMORY_BOUND_MB:
            self.problems.append(f"VmRSS {self.peak_rss_mb:.0f} MB > {MEMORY_BOUND_MB:.0f} MB")


def memory_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, USS) in MB; USS = private pages from smaps_rollup."""
    rss = uss = 0.0
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                uss += int(line.split()[1]) / 1024
    return rss, uss


class Daemon:
    """`python -m edge_agent run` from the repository under test; stderr collected by a thread,
    sd_notify datagrams drained by the caller's loop."""

    def __init__(self, folder: Path, config: Path) -> None:
        self.folder, self.config = folder, config
        self.process: subprocess.Popen[str] | None = None
        self.lines: list[str] = []
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        env = {
            **os.environ,
            "GEMINI_API_KEY": "k",
            "NOTIFY_SOCKET": str(self.folder / "notify.sock"),
        }
        env.pop("WATCHDOG_USEC", None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "edge_agent", "run", "--config", str(self.config)],
            cwd=REPO,
            env=env,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
        )
        threading.Thread(target=self._collect, args=(self.process,), daemon=True).start()

    def _collect(self, process: subprocess.Popen[str]) -> None:
        assert process.stderr is not None
        for line in process.stderr:
            self.lines.append(line.rstrip("\n")[:2000])

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def exit_code(self) -> int | None:
        assert self.process is not None
        return self.process.poll()

    def answered(self) -> int:
        return sum(1 for line in list(self.lines) if ANSWERED.search(line))

    def stop(self) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(5)


class Run:
    """Walks the daemon through every case; the outcomes are judged by the tests below."""

    def __init__(self, folder: Path, mic: Path) -> None:
        self.folder = folder
        self.mic = mic
        self.server = HostileServer(folder / "certs")
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(folder / "notify.sock"))
        self.notify.setblocking(False)
        self.ready = 0
        self.outcomes: list[Outcome] = []
        self.current: Outcome | None = None
        self.final_exit: int | None = None
        self.daemon: Daemon

    def write_config(self) -> Path:
        config = self.folder / "config.toml"
        config.write_text(
            f'[live]\nendpoint = "{self.server.url}"\nca_file = "{self.server.cert_path}"\n'
            "connect_timeout_s = 3.0\nmax_backoff_s = 0.5\n"
            '[conversation]\nstart = "always"\nchimes = false\n'
            "[vad]\nhangover_ms = 300\ncontinuation_ms = 0\n"  # a turn every ~1 s: one per case
            f'[audio]\ninput_device = "file:{self.mic}"\n'
            f'output_device = "file:{self.folder}/out.wav"\necho = "none"\n'
            f'[service]\nstate_dir = "{self.folder}/state"\nlog_level = "info"\n'
        )
        return config

    async def play(self) -> None:
        await self.server.start()
        self.daemon = Daemon(self.folder, self.write_config())
        loop = asyncio.get_running_loop()
        drain = asyncio.create_task(self._drain_notify(loop))
        sampler = asyncio.create_task(self._sample_memory())
        try:
            await self._start_daemon()
            for case in CASES:
                self.current = Outcome(case.name)
                self.outcomes.append(self.current)
                first_line = len(self.daemon.lines)
                started = time.monotonic()
                try:
                    async with asyncio.timeout(CASE_BOUND_S):
                        await self._case(case.play, self.current)
                except TimeoutError:
                    self.current.problems.append(f"the case took over {CASE_BOUND_S:.0f} s")
                self._sample(self.current)
                self.current.daemon_start = self.daemon.starts
                self.current.end_uss_mb = memory_mb(self.daemon.pid)[1]
                self.current.seconds = time.monotonic() - started
                self.current.log = self.daemon.lines[first_line:]
                self.current.exit_code = self.daemon.exit_code()
                self.current.judge()
                print(self.current.line(), flush=True)
                if self.current.exit_code is not None:
                    await self._start_daemon()
            self.final_exit = self.daemon.stop()
        finally:
            self.daemon.stop()
            drain.cancel()
            sampler.cancel()
            await self.server.stop()
            self.notify.close()

    async def _start_daemon(self) -> None:
        for peer in self.server.stale_peers():
            await peer.finish()
        wanted = self.ready + 1
        self.daemon.start()
        deadline = time.monotonic() + 60
        while self.ready < wanted:
            if self.daemon.exit_code() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    "the daemon never became READY:\n" + "\n".join(self.daemon.lines[-20:])
                )
            await asyncio.sleep(0.05)

    async def _drain_notify(self, loop: asyncio.AbstractEventLoop) -> None:
        while True:
            message = (await loop.sock_recv(self.notify, 4096)).decode()
            self.ready += message.count("READY=1")

    async def _sample_memory(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            if self.current is not None:
                self._sample(self.current)

    def _sample(self, outcome: Outcome) -> None:
        rss, uss = memory_mb(self.daemon.pid)
        outcome.peak_rss_mb = max(outcome.peak_rss_mb, rss)
        outcome.peak_uss_mb = max(outcome.peak_uss_mb, uss)

    async def _peer(self) -> Peer | None:
        """The daemon's next connection (with its setup read); None when it died or never came."""
        deadline = time.monotonic() + WAIT_CONNECTION_S
        while time.monotonic() < deadline and self.daemon.exit_code() is None:
            peer = await self.server.next_peer(0.2)
            if peer is None:
                continue
            if await peer.read_setup():
                return peer
            await peer.finish()
        return None

    async def _case(self, play: Script, outcome: Outcome) -> None:
        hostile = await self._peer()
        if hostile is None:
            outcome.problems.append("the daemon did not connect for the case")
            return
        try:
            await play(hostile)
        finally:
            await hostile.finish()
        await self._good_turn(outcome)

    async def _good_turn(self, outcome: Outcome) -> None:
        """Good connections until one has a turn answered (a daemon may need a few tries)."""
        deadline = time.monotonic() + WAIT_TURN_S
        while time.monotonic() < deadline and not outcome.answer_played:
            good = await self._peer()
            if good is None:
                return
            outcome.reconnected = True
            outcome.good_connections += 1
            before = self.daemon.answered()
            handle = f"{outcome.name}-{outcome.good_connections}-".ljust(MEGABYTE, "h")
            try:
                turn = await answer_one_turn(good, deadline - time.monotonic(), handle)
                outcome.turn_end_seen |= turn.turn_end_seen
                outcome.answer_sent |= turn.answer_sent
                if turn.answer_sent:
                    outcome.answer_played = await self._played(before)
            finally:
                await good.finish()

    async def _played(self, before: int) -> bool:
        deadline = time.monotonic() + WAIT_PLAYED_S
        while time.monotonic() < deadline and self.daemon.exit_code() is None:
            if self.daemon.answered() > before:
                return True
            await asyncio.sleep(0.05)
        return False


@pytest.fixture(scope="module")
def hostile_run(
    tmp_path_factory: pytest.TempPathFactory, speech: Callable[..., np.ndarray]
) -> Iterator[Run]:
    folder = tmp_path_factory.mktemp("hostile")
    questions = speech("Hi.", "Yes.", "Okay.", gap_s=0.45)
    repeats = int(WAV_SECONDS * 16000 / len(questions)) + 1
    mic = write_wav(folder / "mic.wav", np.tile(questions, repeats))
    run = Run(folder, mic)
    started = time.monotonic()
    asyncio.run(run.play())
    print(
        f"hostile server: {len(CASES)} cases in {time.monotonic() - started:.0f} s, "
        f"{run.server.connections} connections, {run.daemon.starts} daemon start(s)"
    )
    yield run


def test_there_are_at_least_40_cases() -> None:
    assert len(CASES) >= 40
    assert len({case.name for case in CASES}) == len(CASES)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("name", [case.name for case in CASES])
def test_the_daemon_survives_and_answers_after(hostile_run: Run, name: str) -> None:
    outcome = next(o for o in hostile_run.outcomes if o.name == name)
    if outcome.problems:
        tail = "\n".join(line[:300] for line in outcome.log[-25:])
        pytest.fail(f"{'; '.join(outcome.problems)}\n--- daemon stderr ---\n{tail}", False)


@pytest.mark.timeout(600)
def test_memory_does_not_grow_with_connections(hostile_run: Run) -> None:
    """Each good connection hands out a fresh 1 MB handle, and one case loops 25 more: a daemon
    that keeps something per connection (or per handle) grows by about a megabyte each."""
    growth = 0.0
    for start in {o.daemon_start for o in hostile_run.outcomes}:
        life = [o.end_uss_mb for o in hostile_run.outcomes if o.daemon_start == start]
        life = [uss for uss in life if uss > 0]  # 0: the daemon had died
        if len(life) > 1:
            growth = max(growth, max(life) - life[0])
    assert growth <= GROWTH_BOUND_MB, f"USS grew by {growth:.0f} MB over {len(CASES)} cases"


@pytest.mark.timeout(600)
def test_the_daemon_ran_every_case_on_one_start_and_stops_cleanly(hostile_run: Run) -> None:
    died = [o.name for o in hostile_run.outcomes if o.exit_code is not None]
    assert hostile_run.daemon.starts == 1, f"restarted after: {died}"
    assert hostile_run.final_exit == 0
