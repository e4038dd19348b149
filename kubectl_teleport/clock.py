"""The one clock the careful paths read; tests replace `now` instead of sleeping."""

from __future__ import annotations

import time


def now() -> float:
    """Current Unix time in seconds."""
    return time.time()
