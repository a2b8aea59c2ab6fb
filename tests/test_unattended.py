"""Months unattended: outages, refused keys, silent servers, stale turns, bounded memory."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import logging
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_agent.credentials import Credential
from edge_agent.events import (
    Connected,
    Disconnected,
    GoAway,
    Offline,
    Online,
    StateChanged,
    TurnComplete,
    TurnLost,
    Usage,
)
from edge_agent.live import session as session_module
from edge_agent.live.probe import probe_service, tls_context
from edge_agent.live.session import LiveSession
from edge_agent.live.translate import events_from_message
from tests.conftest import read_log, run_cli, until, write_wav
from tests.test_live_session import Recorder, live_config, running, speak_turn, type_turn
from tests.test_service import read_until, start_daemon


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_a_long_outage_makes_few_attempts_and_few_log_lines(
    start_emulator: Callable[..., Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Ten minutes on a 100x clock: max_backoff_s 0.6 stands for 60 s. Attempts are counted,
    not timed: after the first quick retry each waits the backoff (0.8 to 1 x its cap), and a
    loaded machine only makes the gaps longer."""
    emulator = await start_emulator()
    config = live_config(emulator, tmp_path, max_backoff_s=0.6)
    live = config.live.model_copy(update={"endpoint": f"https://127.0.0.1:{closed_port()}"})
    config = config.model_copy(update={"live": live})
    attempts: list[float] = []

    def key() -> Credential:
        attempts.append(time.monotonic())
        return Credential("k", "test")

    recorder = Recorder()
    session = LiveSession(config, recorder, key)
    caplog.set_level(logging.INFO)
    task = asyncio.create_task(session.run())
    await until(lambda: len(attempts) >= 10)
    await session.close()
    task.cancel()
    gaps = [later - earlier for earlier, later in itertools.pairwise(attempts)]
    assert min(gaps[1:]) >= 0.8 * 0.6, gaps
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(loud) <= 3, [r.getMessage() for r in loud]
    assert len(recorder.of(Offline)) == 1  # one outage, one cause


async def test_goaway_with_no_time_left_on_every_connect_is_backed_off(
    start_emulator: Callable[..., Any], tmp_path: Path
) -> None:
    emulator = await start_emulator(goaway_every=0.05, goaway_time_left_s=0.0)
    config = live_config(emulator, tmp_path, max_backoff_s=1.0)
    async with running(config) as (_, recorder, _):
        # without backoff this server got ~15 reconnects a second
        await until(lambda: len(recorder.of(Connected)) >= 5)
    gaps = [connected.gap_s for connected in recorder.of(Connected)]
    assert min(gaps[2:]) >= 0.8 * 1.0, gaps  # from the second failure on: the backoff's cap


async def test_a_turn_asked_while_offline_is_sent_if_fresh_and_reported_if_stale(
    start_emulator: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(session_module, "REPLAY_WINDOW_S", 1.0)
    emulator = await start_emulator()
    port, cert_dir = emulator.port, emulator.options.cert_dir
    config = live_config(emulator, tmp_path, max_backoff_s=0.3)
    async with running(config) as (session, recorder, _):
        await recorder.wait_for(Connected)
        await emulator.stop()
        await recorder.wait_for(Offline)
        speak_turn(session)  # stale by the time the service is back
        await asyncio.sleep(1.5)
        speak_turn(session)  # fresh
        await start_emulator(port=port, cert_dir=cert_dir)
        await recorder.wait_for(TurnComplete, timeout=10)
    lost = recorder.of(TurnLost)
    assert len(lost) == 1 and lost[0].cause == "offline"
    assert len(recorder.of(TurnComplete)) == 1
    assert len(recorder.of(Online)) == 1


async def test_a_deadline_expired_session_is_replaced_by_a_fresh_one(
    start_emulator: Callable[..., Any], tmp_path: Path
) -> None:
    emulator = await start_emulator(clock_scale=300.0)  # the 15-minute limit in 3 s
    config = live_config(emulator, tmp_path, context_compression=False)
    async with running(config) as (session, recorder, _):
        await recorder.wait_for(Connected)
        type_turn(session, "hello")
        await recorder.wait_for(TurnComplete)
        # the connection's goAway (at 9 scaled minutes) is resumed; the session's 15 end it
        async with asyncio.timeout(10):
            while not any("Deadline expired" in d.cause for d in recorder.of(Disconnected)):
                await asyncio.sleep(0.05)
        causes = [d.cause for d in recorder.of(Disconnected)]
        expired = next(i for i, cause in enumerate(causes) if "Deadline expired" in cause)
        await recorder.wait_for(Connected, count=expired + 2, timeout=10)
        type_turn(session, "still there?")
        await recorder.wait_for(TurnComplete, count=2, timeout=10)
    assert recorder.of(Connected)[expired + 1].resumed is False  # not the dead session's handle


def test_usage_numbers_from_the_server_are_checked() -> None:
    from google.genai import types

    message = types.LiveServerMessage(
        usage_metadata=types.UsageMetadata(
            prompt_token_count=-999999,
            response_token_count=10**20,
            total_token_count=-1,
        )
    )
    (usage,) = [e for e in events_from_message(message) if isinstance(e, Usage)]
    assert (usage.prompt_tokens, usage.response_tokens, usage.total_tokens) == (0, 0, 0)


def test_goaway_time_left_nonsense_is_clamped() -> None:
    from edge_agent.live.translate import parse_duration

    assert [parse_duration(t) for t in ("0s", "abc", "-5s", "1e400s", "nans", "2.5s")] == [
        0.0,
        0.0,
        0.0,
        86400.0,
        0.0,
        2.5,
    ]


async def test_the_probe_tells_refusals_from_trouble(start_emulator: Callable[..., Any]) -> None:
    old_model = "gemini-2.5-flash-native-audio-preview-09-2025"
    emulator = await start_emulator(api_key="right", reject_models=(old_model,))
    ca = str(emulator.cert_path)

    def probe(key: str, model: str = "gemini-3.8-live", endpoint: str = emulator.url) -> str:
        return probe_service(endpoint, "v1beta", key, model, ca).verdict

    verdicts = await asyncio.to_thread(
        lambda: [
            probe("right"),
            probe("wrong"),
            probe("", "gemini-3.8-live"),
            probe("right", old_model),
            probe("right", endpoint=f"https://127.0.0.1:{closed_port()}"),
        ]
    )
    assert verdicts == ["ok", "key_rejected", "key_rejected", "model_rejected", "unreachable"]


def test_the_start_up_check_imports_no_sdk() -> None:
    code = (
        "import sys, edge_agent.startup, edge_agent.live.probe; "
        "assert not any(m.startswith('google.genai') for m in sys.modules), 'genai imported'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


async def test_run_exits_2_before_ready_on_a_refused_key(
    start_emulator: Callable[..., Any], tmp_path: Path
) -> None:
    emulator = await start_emulator(api_key="right")
    config = tmp_path / "c.toml"
    config.write_text(
        f'[live]\nendpoint = "{emulator.url}"\nca_file = "{emulator.cert_path}"\n'
        f'[audio]\ninput_device = "file:/nonexistent.wav"\n'  # never reached: the key is first
    )
    done = await asyncio.to_thread(
        run_cli, "run", "--config", str(config), env={"GEMINI_API_KEY": "wrong"}
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith(
        "edge-agent: error: the service refused the API key from GEMINI_API_KEY"
    )


def test_simulate_against_an_unreachable_endpoint_says_it_was_never_reached(
    tmp_path: Path,
) -> None:
    done = run_cli("simulate", "--json", "--endpoint", f"https://127.0.0.1:{closed_port()}")
    assert done.returncode == 1
    assert "the service was never reached" in done.stdout


async def test_a_key_revoked_mid_run_is_the_error_state_until_a_new_key_is_stored(
    start_emulator: Callable[..., Any], tmp_path: Path, notify_socket: socket.socket
) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "gemini-api-key").write_text("first-key")
    emulator = await start_emulator(api_key="first-key")
    port, cert_dir = emulator.port, emulator.options.cert_dir
    live = (
        f'[live]\nendpoint = "{emulator.url}"\nca_file = "{emulator.cert_path}"\n'
        "max_backoff_s = 0.5\n[conversation]\nstart = \"always\"\nchimes = false\n"
    )
    daemon = start_daemon(tmp_path, live, CREDENTIALS_DIRECTORY=str(credentials))
    seen: list[str] = []
    try:
        await asyncio.to_thread(read_until, notify_socket, "READY=1", seen)
        await emulator.stop()
        await start_emulator(port=port, cert_dir=cert_dir, api_key="second-key")  # revoked
        await asyncio.to_thread(read_until, notify_socket, "STATUS=error", seen, 30)
        assert daemon.poll() is None
        (credentials / "gemini-api-key").write_text("second-key")  # the user stores a new key
        await asyncio.to_thread(read_until, notify_socket, "STATUS=idle", seen, 30)
        assert daemon.poll() is None
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(15) == 0
        _, errors = daemon.communicate()
    assert "Traceback" not in errors
    assert errors.count("refused the key") == 1  # one line, not one per retry


async def test_a_goaway_during_the_users_turn_switches_right_after_the_turn(
    start_emulator: Callable[..., Any], tmp_path: Path
) -> None:
    emulator = await start_emulator()
    pcm = (np.sin(np.arange(16000) / 5) * 3000).astype(np.int16).tobytes()
    async with running(live_config(emulator, tmp_path)) as (session, recorder, _):
        await recorder.wait_for(Connected)
        session.activity_start()
        session.send_audio(pcm[:16000])
        for connection in list(emulator.connections.values()):
            connection._spawn(connection.go_away(30.0))
        await recorder.wait_for(GoAway)
        await asyncio.sleep(0.3)
        assert len(recorder.of(Connected)) == 1  # not while the user speaks
        session.send_audio(pcm[16000:])
        session.activity_end()
        await recorder.wait_for(Connected, count=2, timeout=3)  # not at timeLeft - 5 s
        await recorder.wait_for(TurnComplete)


async def test_a_restart_within_remember_minutes_resumes_the_conversation(
    tmp_path: Path,
) -> None:
    from edge_agent.config import config_from_dict
    from edge_agent.conversation import Conversation, DailyBudget

    opened: list[bool] = []

    class RecordingLink:
        def open(self, resume: bool) -> None:
            opened.append(resume)

        def close(self) -> None:
            pass

    config = config_from_dict({"conversation": {"remember_minutes": 10}})

    def conversation() -> Conversation:
        budget = DailyBudget(0, tmp_path, dt.date.today)
        link = RecordingLink()
        return Conversation(config, link, time.monotonic, lambda _: None, budget, tmp_path)

    first = conversation()
    first.open("speech")
    first.remember_on_exit()  # the daemon stops mid-conversation
    conversation().open("speech")  # the restarted daemon
    assert opened == [False, True]


async def test_while_idle_the_service_is_probed_so_an_outage_shows_before_anyone_speaks(
    start_emulator: Callable[..., Any], tmp_path: Path
) -> None:
    from edge_agent.assembly import assemble
    from edge_agent.audio.playback import Speaker
    from edge_agent.config import config_from_dict
    from edge_agent.reachability import Reachability
    from edge_agent.startup import check_service

    emulator = await start_emulator()
    port, cert_dir = emulator.port, emulator.options.cert_dir
    config = config_from_dict(
        {"live": {"endpoint": emulator.url, "ca_file": str(emulator.cert_path)}}
    )
    keys = lambda: Credential("k", "test")  # noqa: E731
    parts = assemble(config, Speaker(24000), time.monotonic, keys, tmp_path)
    states: list[str] = []
    parts.agent.listeners.append(
        lambda event: states.append(event.state) if isinstance(event, StateChanged) else None
    )
    probe = Reachability(config, keys, parts.agent, parts.conversation, every_s=0.1)
    probe.start(await check_service(config, keys))
    try:
        await emulator.stop()
        async with asyncio.timeout(5):
            while "offline" not in states:
                await asyncio.sleep(0.05)
        await start_emulator(port=port, cert_dir=cert_dir)
        async with asyncio.timeout(10):
            while states[-1] != "idle":
                await asyncio.sleep(0.05)
    finally:
        probe.close()
        await parts.link.shutdown()


async def test_a_server_silent_after_goaway_mid_answer_is_left_at_once(
    start_emulator: Callable[..., Any], tmp_path: Path
) -> None:
    emulator = await start_emulator(latency_ms=500)
    async with running(live_config(emulator, tmp_path)) as (session, recorder, _):
        await recorder.wait_for(Connected)
        emulator.options.silent_after_goaway = True
        speak_turn(session)
        await asyncio.sleep(0.1)  # the turn is on the wire, its answer not yet
        (old,) = emulator.connections.values()
        old._spawn(old.go_away(30.0))  # then this connection says nothing more
        await recorder.wait_for(Connected, count=2, timeout=8)  # not at timeLeft - 5 s
        await recorder.wait_for(TurnComplete, timeout=8)  # the turn replayed and answered


async def test_a_refused_handle_after_an_outage_gets_a_fresh_session_at_once(
    start_emulator: Callable[..., Any], tmp_path: Path
) -> None:
    emulator = await start_emulator()
    port, cert_dir = emulator.port, emulator.options.cert_dir
    config = live_config(emulator, tmp_path, max_backoff_s=30.0)
    async with running(config) as (session, recorder, _):
        await recorder.wait_for(Connected)
        type_turn(session, "hello")
        await recorder.wait_for(TurnComplete)
        await emulator.stop()
        await recorder.wait_for(Offline)
        await asyncio.sleep(4.0)  # a few failed attempts: the backoff has grown
        await start_emulator(port=port, cert_dir=cert_dir)  # knows no handle: 1007
        speak_turn(session)  # a fresh turn keeps the retries short; the 1007 is retried at once
        await recorder.wait_for(TurnComplete, count=2, timeout=8)
    assert recorder.of(Connected)[-1].resumed is False


async def test_without_a_ca_file_a_hashed_ca_directory_is_read_only_as_needed(
    start_emulator: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CA bundle is read whole (1.6 MB for certifi's); OpenSSL reads a hashed directory's CAs
    one at a time, when a chain needs them. The system's directory is used when it has one."""
    emulator = await start_emulator(api_key="right")
    folder = tmp_path / "certs"
    folder.mkdir()
    shutil.copy(emulator.cert_path, folder / "emulator-ca.pem")
    subprocess.run(["openssl", "rehash", str(folder)], check=True, capture_output=True)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.setenv("SSL_CERT_DIR", str(folder))
    assert tls_context().cert_store_stats()["x509_ca"] == 0  # nothing read up front
    result = await asyncio.to_thread(
        probe_service, emulator.url, "v1beta", "right", "gemini-3.8-live"
    )
    assert result.verdict == "ok", result
    monkeypatch.delenv("SSL_CERT_DIR")
    if ssl.get_default_verify_paths().capath == "/etc/ssl/certs":  # Debian, Raspberry Pi OS
        assert tls_context().cert_store_stats()["x509_ca"] == 0


def test_one_tls_context_serves_every_connection_until_its_ca_file_changes(
    tmp_path: Path,
) -> None:
    """A CA store costs ~1 MB: the probe and each reconnect share one, re-read once the file
    is replaced (a rotated private CA)."""
    import trustme

    ca_file = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(ca_file))
    first = tls_context(str(ca_file))
    assert tls_context(str(ca_file)) is first
    assert tls_context() is tls_context() and tls_context() is not first
    trustme.CA().cert_pem.write_to_path(str(ca_file))
    stat = ca_file.stat()
    os.utime(ca_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert tls_context(str(ca_file)) is not first


async def test_a_goaway_loop_is_backed_off_and_is_one_outage(
    start_emulator: Callable[..., Any], tmp_path: Path
) -> None:
    """A service that says goAway "0s" right after every setup: each such connection is a
    failed attempt, so they come ever further apart, and the loop is one WARNING, not one per
    connection ("offline" ... "back online" every second on main c36422e)."""
    emulator = await start_emulator(goaway_every=0.05, goaway_time_left_s=0.0)
    mic = write_wav(tmp_path / "mic.wav", np.zeros(16000 * 120, np.int16))
    config = tmp_path / "config.toml"
    config.write_text(
        f'[live]\nendpoint = "{emulator.url}"\nca_file = "{emulator.cert_path}"\n'
        "max_backoff_s = 30\n"
        '[conversation]\nstart = "always"\nchimes = false\n'
        f'[audio]\ninput_device = "file:{mic}"\noutput_device = "file:{tmp_path}/o.wav"\n'
        f'[service]\nstate_dir = "{tmp_path}/state"\n'
    )
    daemon = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edge_agent", "run", "--config", str(config),
        env={**os.environ, "GEMINI_API_KEY": "k"}, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        while len(emulator.parsed_setups) < 6:  # the suite's timeout is the only limit
            await asyncio.sleep(0.2)
    finally:
        daemon.terminate()
        assert daemon.stderr is not None
        errors = (await daemon.stderr.read()).decode()
        await daemon.wait()
    setups = [e["t"] for e in read_log(emulator) if "setup" in e["msg"] and e["dir"] == "in"]
    gaps = [later - earlier for earlier, later in itertools.pairwise(setups)]
    for number, gap in enumerate(gaps[1:5], 2):  # 0.5 * 2**(n-1) s, less 20 % jitter, at least
        assert gap >= 0.4 * 2 ** (number - 1), gaps
    warnings = [line for line in errors.splitlines() if " WARNING " in line]
    assert len(warnings) <= 1 and "back online" not in errors, warnings
