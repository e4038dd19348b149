"""Small text helpers every command shares: durations (`1h30m`), RFC 3339 times, and the one warning line.

Standard library only (`status` prints dates without importing the network side).
"""

from __future__ import annotations

import sys
import time

_UNITS = {"h": 3600, "m": 60, "s": 1}
MAX_DURATION = 10 * 365 * 86400  # anything longer is a typo, not a lifetime


def parse_duration(text: str) -> int:
    """Seconds in `text` (`1h30m`, `20m`, `90s`, or bare seconds); ValueError for anything else or <= 0."""
    s = text.strip().lower()
    if s.isdigit():
        total = int(s)
    else:
        total, number = 0, ""
        for ch in s:
            if ch.isdigit():
                number += ch
            elif ch in _UNITS and number:
                total += int(number) * _UNITS[ch]
                number = ""
            else:
                raise ValueError(f"bad duration {text[:40]!r}: use forms like 90s, 20m, 1h or 1h30m")
        if number or not s:
            raise ValueError(f"bad duration {text[:40]!r}: use forms like 90s, 20m, 1h or 1h30m")
    if total <= 0:
        raise ValueError(f"bad duration {text[:40]!r}: must be more than zero")
    if total > MAX_DURATION:
        raise ValueError(f"bad duration {text[:40]!r}: too long")
    return total


def format_duration(seconds: float) -> str:
    """A short human form: `1h2m`, `5m3s`, `42s`; negative durations get a leading minus."""
    sign = "-" if seconds < 0 else ""
    s = int(abs(seconds))
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    if h:
        return f"{sign}{h}h{m}m"
    if m:
        return f"{sign}{m}m{sec}s"
    return f"{sign}{sec}s"


def rfc3339(ts: float) -> str:
    """Unix seconds as `2026-01-02T03:04:05Z`."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(ts)))


def warn(message: str) -> None:
    """One warning line on stderr (kubectl shows it to the user)."""
    try:
        sys.stderr.write(f"kubectl-teleport: warning: {message}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
