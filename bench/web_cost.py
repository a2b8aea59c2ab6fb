"""python -m bench.web_cost [--rounds N]: what the page costs the daemon.

Starts `edge-agent run` (WAV microphone and speaker, no network: the endpoint is unreachable and
no conversation opens) with `[web] enabled` false and true, alternately, and reports the time
from exec to READY (sd_notify), the resident memory 3 s after READY and, with the page on, the
time until the page answers and the memory after a page load and an event-stream client.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import wave
from pathlib import Path

import aiohttp

SETTLE_S = 3.0


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def use_page(url: str) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(url + "/") as page:
            await page.read()
        async with http.ws_connect(url.replace("http", "ws") + "/events") as ws:
            await ws.receive()
            await asyncio.sleep(0.5)


def one_run(folder: Path, web: bool) -> dict[str, float]:
    port = free_port()
    config = folder / "config.toml"
    config.write_text(
        f'[live]\nendpoint = "https://127.0.0.1:9"\n'
        f'[audio]\ninput_device = "file:{folder}/mic.wav"\noutput_device = "file:{folder}/o.wav"\n'
        f'[service]\nstate_dir = "{folder}/state"\n'
        f"[web]\nenabled = {str(web).lower()}\nport = {port}\n"
    )
    notify_path = folder / "notify.sock"
    notify_path.unlink(missing_ok=True)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    notify.settimeout(30)
    env = {**os.environ, "GEMINI_API_KEY": "k", "NOTIFY_SOCKET": str(notify_path)}
    started = time.monotonic()
    daemon = subprocess.Popen(
        [sys.executable, "-m", "edge_agent", "run", "--config", str(config)],
        env=env,
        stderr=subprocess.DEVNULL,
    )
    try:
        while b"READY=1" not in notify.recv(4096):
            pass
        figures = {"ready_s": time.monotonic() - started}
        url = f"http://127.0.0.1:{port}"
        if web:
            while True:
                try:
                    urllib.request.urlopen(url + "/api/state", timeout=1).read()
                    break
                except OSError:
                    time.sleep(0.01)
            figures["page_s"] = time.monotonic() - started
        time.sleep(max(0.0, started + figures["ready_s"] + SETTLE_S - time.monotonic()))
        figures["rss_mib"] = rss_mib(daemon.pid)
        if web:
            asyncio.run(use_page(url))
            figures["rss_used_mib"] = rss_mib(daemon.pid)
        return figures
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(15)
        notify.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edge-agent-web-cost-") as name:
        folder = Path(name)
        with wave.open(str(folder / "mic.wav"), "wb") as mic:
            mic.setnchannels(1)
            mic.setsampwidth(2)
            mic.setframerate(16000)
            mic.writeframes(bytes(2 * 16000 * 60))
        runs: dict[bool, list[dict[str, float]]] = {False: [], True: []}
        for _ in range(args.rounds):
            for web in (False, True):
                runs[web].append(one_run(folder, web))
    print(f"{'figure (median of ' + str(args.rounds) + ')':<34}{'page off':>10}{'page on':>10}")
    for key in ("ready_s", "page_s", "rss_mib", "rss_used_mib"):
        row = [
            f"{statistics.median(r[key] for r in runs[web]):10.2f}"
            if key in runs[web][0]
            else f"{'-':>10}"
            for web in (False, True)
        ]
        print(f"{key:<34}{''.join(row)}")


if __name__ == "__main__":
    main()
