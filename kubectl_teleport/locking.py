"""The identity's lock: `flock` on `<data-dir>/lock` (never on a data file), one per identity.

The kernel drops an flock when its holder dies, so a killed process never leaves a stale lock behind.
Standard library only: 100 processes waiting at once must not each pay for importing a lock library
(filelock 4 costs ~50 ms of CPU to import, four times the interpreter's start-up; see docs/benchmarks.md).
"""

from __future__ import annotations

import fcntl
import os
import time

from .errors import LOCK_TIMEOUT, PluginError

DEFAULT_WAIT = 30.0
_POLL_FIRST, _POLL_MAX = 0.005, 0.05


class Timeout(Exception):
    """The lock was not had in time."""


class IdentityLock:
    """An exclusive flock on one lock file; the file is created 0600 and never followed through a symlink."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        """Take the lock if it is free right now."""
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    def acquire(self, timeout: float = DEFAULT_WAIT) -> None:
        """Wait at most `timeout` seconds for the lock (0: try once); raise Timeout after that."""
        end = time.monotonic() + timeout
        pause = _POLL_FIRST
        while not self.try_acquire():
            left = end - time.monotonic()
            if left <= 0:
                raise Timeout(self.path)
            time.sleep(min(pause, left))
            pause = min(pause * 2, _POLL_MAX)

    def release(self) -> None:
        """Let go (closing the descriptor drops the flock)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def __enter__(self) -> IdentityLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def identity_lock(dd: object) -> IdentityLock:
    """The (unacquired) lock of a DataDir, creating its directory first."""
    dd.create()  # type: ignore[attr-defined]
    return IdentityLock(dd.lock_path)  # type: ignore[attr-defined]


def acquire(dd: object, wait: float = DEFAULT_WAIT) -> IdentityLock:
    """Take a DataDir's lock, waiting at most `wait` seconds; PluginError(LOCK_TIMEOUT) after that."""
    lock = identity_lock(dd)
    try:
        lock.acquire(wait)
    except Timeout:
        raise timeout_error(dd, wait) from None
    return lock


def timeout_error(where: object, wait: float) -> PluginError:
    """The error for a lock not had within `wait` seconds (`where`: a DataDir or its path)."""
    root = getattr(where, "root", where)
    return PluginError(f"another kubectl-teleport process held the lock on {root} for more than {wait:g}s; "
                       "try again, or look for a hung process", LOCK_TIMEOUT)
