"""The system clock as the schedule sees it: whether it is synchronised, and the local zone.

A Pi has no real-time clock: until NTP answers, the time is the last one saved at shutdown (or
1970), so an alarm may look hours late that is not. The schedule judges lateness only once
this says the clock is right.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from datetime import UTC, datetime, tzinfo
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo

TIME_ERROR = 5  # adjtimex's answer while the kernel deems the clock unsynchronised
STA_UNSYNC = 0x40
TIMESYNC = Path("/run/systemd/timesync")  # systemd-timesyncd's runtime directory


class _Timex(ctypes.Structure):
    """struct timex up to `status` (the kernel's layout for the C `long`), then room to spare."""

    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("rest", ctypes.c_char * 256),
    ]


def clock_synchronised() -> bool:
    """The kernel's word (adjtimex with no modes only reads), else systemd-timesyncd's files.

    The unit's ProtectClock=yes refuses adjtimex (EPERM), so on the Pi the answer usually comes
    from timesyncd: its directory without `synchronized` means not yet. When neither can tell
    (no timesyncd, another system), True: a clock nobody can vouch for is still the best
    guess, and False would hold an overdue alarm forever instead of ringing or reporting it.
    """
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        timex = _Timex()
        state = libc.adjtimex(ctypes.byref(timex))
        if state != -1:
            return state != TIME_ERROR and not timex.status & STA_UNSYNC
    with contextlib.suppress(OSError):
        if TIMESYNC.is_dir():
            return (TIMESYNC / "synchronized").exists()
    return True


@cache
def local_zone() -> tzinfo:
    """The system's zone as a ZoneInfo, which knows daylight-saving changes; datetime.now()
    .astimezone() alone gives a fixed offset, an hour off once the clocks change. Read once: a
    new zone (timedatectl set-timezone) applies from the next start."""
    names = [os.environ.get("TZ", "").removeprefix(":")]
    with contextlib.suppress(OSError):
        names.append(os.path.realpath("/etc/localtime").partition("/zoneinfo/")[2])
    for name in filter(None, names):
        with contextlib.suppress(KeyError, ValueError, OSError):  # ZoneInfoNotFoundError: KeyError
            return ZoneInfo(name)
    with contextlib.suppress(KeyError, ValueError, OSError), open("/etc/localtime", "rb") as file:
        return ZoneInfo.from_file(file)
    return datetime.now().astimezone().tzinfo or UTC


def local_now() -> datetime:
    return datetime.now(local_zone())
