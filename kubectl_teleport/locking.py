"""The identity's lock: an flock on `<data-dir>/lock` (never on a data file), released by the kernel if
the holder dies, so a killed process can never leave a stale lock behind."""

from __future__ import annotations

from filelock import FileLock, Timeout

from .datadir import DataDir
from .errors import LOCK_TIMEOUT, PluginError

DEFAULT_WAIT = 30.0

__all__ = ["DEFAULT_WAIT", "Timeout", "acquire", "identity_lock", "timeout_error"]


def identity_lock(dd: DataDir) -> FileLock:
    """The (unacquired) lock of one identity."""
    dd.create()
    return FileLock(str(dd.lock_path), mode=0o600)


def acquire(dd: DataDir, wait: float = DEFAULT_WAIT) -> FileLock:
    """Take the lock, waiting at most `wait` seconds; PluginError(LOCK_TIMEOUT) after that."""
    lock = identity_lock(dd)
    try:
        lock.acquire(timeout=wait)
    except Timeout:
        raise timeout_error(dd, wait) from None
    return lock


def timeout_error(dd: DataDir, wait: float) -> PluginError:
    """The error for a lock not had within `wait` seconds."""
    return PluginError(f"another kubectl-teleport process held the lock on {dd.root} for more than "
                       f"{wait:g}s; try again, or look for a hung process", LOCK_TIMEOUT)
