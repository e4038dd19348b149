"""Parse and format durations like `1h`, `90m`, `1h30m`, `45s` (whole seconds)."""

from __future__ import annotations

_UNITS = {"h": 3600, "m": 60, "s": 1}


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
                raise ValueError(f"bad duration {text!r}: use forms like 90s, 20m, 1h or 1h30m")
        if number or not s:
            raise ValueError(f"bad duration {text!r}: use forms like 90s, 20m, 1h or 1h30m")
    if total <= 0:
        raise ValueError(f"bad duration {text!r}: must be more than zero")
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
