"""Built-in tools: time, device status, volume, allow-listed GPIO outputs, a camera look, and
ending the conversation."""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import socket
import struct
import time
from pathlib import Path
from typing import Any

from edge_agent.audio.volume import Volume
from edge_agent.gpio import DEVICE_TREE, describe, pin_factory
from edge_agent.tools.registry import Tool, tool
from edge_agent.tools.runner import ToolContext

SIOCGIFADDR = 0x8915


@tool("The local date, time and time zone of the device.")
def get_time() -> dict[str, str]:
    now = dt.datetime.now().astimezone()
    return {
        "date": now.date().isoformat(),
        "time": now.strftime("%H:%M:%S"),
        "weekday": now.strftime("%A"),
        "zone": now.tzname() or "",
        "utc_offset": now.strftime("%z"),
    }


@tool("The device's health: model, CPU temperature, load, uptime, memory, Wi-Fi signal and IP.")
def device_status() -> dict[str, Any]:
    """From system calls and /sys: the unit's ProcSubset=pid hides /proc/uptime, /proc/meminfo,
    /proc/cpuinfo and /proc/device-tree."""
    return {
        "model": _read_text(DEVICE_TREE / "model"),
        "cpu_temperature_c": _cpu_temperature(),
        "load_1min": round(os.getloadavg()[0], 2),  # glibc asks sysinfo(2)
        "uptime_hours": round(time.clock_gettime(time.CLOCK_BOOTTIME) / 3600, 1),
        **_memory(),
        "wifi_signal_dbm": _wifi_signal(),
        "ip_addresses": _ip_addresses(),
    }


def _read_text(path: Path) -> str | None:
    with contextlib.suppress(OSError, UnicodeDecodeError):
        return path.read_text().strip("\0\n ")
    return None


def _cpu_temperature() -> float | None:
    with contextlib.suppress(OSError, ValueError):
        return int(Path("/sys/class/thermal/thermal_zone0/temp").read_text()) / 1000
    return None


def _memory() -> dict[str, int]:
    """MemAvailable where /proc/meminfo is readable, else the free memory sysconf knows."""
    page = os.sysconf("SC_PAGE_SIZE")
    memory = {"memory_total_mb": os.sysconf("SC_PHYS_PAGES") * page // 2**20}
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return {**memory, "memory_available_mb": int(line.split()[1]) // 1024}
    return {**memory, "memory_free_mb": os.sysconf("SC_AVPHYS_PAGES") * page // 2**20}


def _wifi_signal() -> float | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        lines = Path("/proc/self/net/wireless").read_text().splitlines()[2:]
        if lines:
            return float(lines[0].split()[3].rstrip("."))
    return None


def _ip_addresses() -> dict[str, str]:
    """IPv4 per interface, asked of the kernel (no packet leaves the device)."""
    found = {}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        for _, name in socket.if_nameindex():
            if name == "lo":
                continue
            with contextlib.suppress(OSError):
                packed = struct.pack("256s", name.encode()[:15])
                address = fcntl.ioctl(probe.fileno(), SIOCGIFADDR, packed)[20:24]
                found[name] = socket.inet_ntoa(address)
    return found


def _volume(context: ToolContext) -> Volume:
    if context.volume is None:
        raise RuntimeError("this device has no speaker volume")
    return context.volume


@tool("The speaker volume in percent.", needs_context=True)
def get_volume(context: ToolContext) -> dict[str, int]:
    return {"percent": _volume(context).percent}


@tool(
    "Set the speaker volume.",
    {
        "type": "object",
        "properties": {"percent": {"type": "integer", "minimum": 0, "maximum": 100}},
        "required": ["percent"],
    },
    needs_context=True,
)
def set_volume(context: ToolContext, percent: int) -> dict[str, int]:
    return {"percent": _volume(context).set(percent)}


_outputs: dict[int, Any] = {}


def _switch_output(context: ToolContext, name: str, on: bool) -> dict[str, Any]:
    allowed = context.gpio_outputs or {}
    if name not in allowed:
        raise PermissionError(f"{name!r} is not in [tools.gpio_outputs]")
    from gpiozero import DigitalOutputDevice
    from gpiozero.exc import BadPinFactory

    try:
        pin_factory()
    except BadPinFactory as exc:
        raise RuntimeError(describe(exc)) from None
    pin = allowed[name]
    if pin not in _outputs:
        _outputs[pin] = DigitalOutputDevice(pin)
    _outputs[pin].value = on
    return {"name": name, "on": on}


def gpio_output_tool(names: list[str]) -> Tool:
    """Only the outputs named in [tools.gpio_outputs] exist for the model."""
    return Tool(
        name="gpio_output",
        description="Switch a device output on or off (" + ", ".join(names or ["none"]) + ").",
        function=_switch_output,
        parameters={
            "type": "object",
            "properties": {
                "name": {"type": "string", "enum": names or [""]},
                "on": {"type": "boolean"},
            },
            "required": ["name", "on"],
        },
        needs_context=True,
    )


@tool("Look through the camera: sends the model one fresh picture.", needs_context=True)
async def look(context: ToolContext) -> str:
    if context.capture_frame is None or context.send_frame is None:
        raise RuntimeError("this device has no camera")
    started = time.monotonic()
    frame = await context.capture_frame()
    context.send_frame(frame)
    return f"sent a picture ({len(frame) // 1024} KiB, {time.monotonic() - started:.1f} s)"


@tool("End the conversation when the user says goodbye or is done.", needs_context=True)
def end_conversation(context: ToolContext) -> str:
    context.end_conversation()
    return "the conversation ends after this answer"


def builtin_tools(gpio_output_names: list[str]) -> list[Tool]:
    return [
        get_time,
        device_status,
        get_volume,
        set_volume,
        gpio_output_tool(gpio_output_names),
        look,
        end_conversation,
    ]
