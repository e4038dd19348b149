"""The identity's lock: `flock` on `<data-dir>/lock` (never on a data file), one per identity.

The kernel drops an flock when its holder dies, so a killed process never leaves a stale lock behind. The lock
file itself is never removed (unlinking an flock file while others may be waiting on it is a race).
Built-in modules only (`posix`, `fcntl`, `time`; errors imported when raised): the processes that wait in a
stampede import this and little else (`waiter.py`), and 100 processes waiting at once must not each pay for
importing `os` or a lock library (filelock 4 costs ~50 ms of CPU to import, four times the interpreter's
start-up; see docs/design.md).
"""

import errno
import fcntl
import posix
import time

TYPE_CHECKING = False  # not typing's: waiters in a stampede must not import it (~8 ms each)
if TYPE_CHECKING:
    import os
    from collections.abc import Callable
    from typing import TypeVar

    from ..errors import LockTimeout, UnsafeState

    T = TypeVar("T")

LOCK_NAME = "lock"  # <data-dir>/lock
DEFAULT_WAIT = 30.0
_POLL_FIRST, _POLL_MAX = 0.005, 0.05
_S_IFMT, _S_IFREG = 0o170000, 0o100000


class Timeout(Exception):
    """The lock was not had in time."""


def lock_path(data_dir: str) -> str:
    """The identity lock of a data dir."""
    return f"{data_dir.rstrip('/')}/{LOCK_NAME}"


class IdentityLock:
    """An exclusive flock on one lock file; the file is created 0600 and never followed through a symlink."""

    def __init__(self, path: "str | os.PathLike[str]") -> None:
        self.path: str = posix.fspath(path)
        self._fd: int | None = None

    def _open(self) -> int:
        try:
            fd = posix.open(self.path, posix.O_RDWR | posix.O_CREAT | posix.O_NOFOLLOW | posix.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise _open_error(self.path, exc) from None
        if posix.fstat(fd).st_mode & _S_IFMT != _S_IFREG:
            posix.close(fd)
            raise _unsafe(f"{self.path} is not a regular lock file; remove it and retry")
        return fd

    @property
    def held(self) -> bool:
        """True while this object holds the lock."""
        return self._fd is not None

    def try_acquire(self) -> bool:
        """Take the lock if it is free right now."""
        if self._fd is not None:
            return True
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            posix.close(fd)
            return False
        except BaseException:
            posix.close(fd)
            raise
        self._fd = fd
        return True

    def acquire(self, timeout: float = DEFAULT_WAIT, until: "Callable[[], T | None] | None" = None) -> "T | None":
        """Wait at most `timeout` seconds for the lock (0: try once); raise Timeout after that.

        With `until`, it is asked between two tries: once it returns something, waiting ends *without* the
        lock and that is returned (a waiter that sees the renewer's result needs no turn with the lock).
        Returns None once the lock is held."""
        end = time.monotonic() + timeout
        pause = _POLL_FIRST
        while not self.try_acquire():
            left = end - time.monotonic()
            if left <= 0:
                raise Timeout(self.path)
            time.sleep(min(pause, left))
            pause = min(pause * 2, _POLL_MAX)
            if until is not None:
                found = until()
                if found is not None:
                    return found
        return None

    def acquire_or_fail(self, timeout: float, where: object,
                        until: "Callable[[], T | None] | None" = None) -> "T | None":
        """`acquire`, turning a timeout into LockTimeout naming `where`."""
        try:
            return self.acquire(timeout, until)
        except Timeout:
            raise timeout_error(where, timeout) from None

    def release(self) -> None:
        """Let go (closing the descriptor drops the flock)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            posix.close(fd)

    def __enter__(self) -> "IdentityLock":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def held_elsewhere(path: str) -> bool | None:
    """Whether another process holds the lock at `path` right now (a shared, non-blocking probe that takes
    nothing from it); None when that cannot be told (no lock file, or one this user cannot read)."""
    try:
        fd = posix.open(path, posix.O_RDONLY | posix.O_NOFOLLOW | posix.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return None
    finally:
        posix.close(fd)
    return False


def is_writer(data_dir: "str | os.PathLike[str]") -> bool:
    """False for a reader shared by `init --reader-user`: it may read the cache, never lock or write.

    The owner (or root) of a data dir on a read-only file system is a writer that will fail: its renewal
    attempt says why, and a valid cached certificate is still served."""
    if posix.access(data_dir, posix.W_OK | posix.X_OK):
        return True
    try:
        if not posix.statvfs(data_dir).f_flag & posix.ST_RDONLY:
            return False
        owner = posix.stat(data_dir).st_uid
    except OSError:
        return False
    return posix.geteuid() in (owner, 0)


def _unsafe(message: str) -> "UnsafeState":
    from ..errors import UnsafeState

    return UnsafeState(message)


def _open_error(path: str, exc: OSError) -> Exception:
    """The error for a lock file that cannot be opened: the reason and the fix, or `exc` itself."""
    if exc.errno in (errno.ELOOP, errno.EISDIR, errno.ENXIO, errno.ENOTDIR):
        return _unsafe(f"{path} is not a regular lock file (a symlink or a directory?); remove it and retry")
    if exc.errno == errno.EROFS:
        return _unsafe(f"cannot open the lock {path} ({exc.strerror}); remount the file system read-write, or "
                       "choose another --data-dir")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return _unsafe(f"cannot open the lock {path} ({exc.strerror}); renewing is the job of the user that owns "
                       "the data dir")
    return exc


def timeout_error(where: object, wait: float) -> "LockTimeout":
    """The error for a lock not had within `wait` seconds (`where`: the data dir)."""
    from ..errors import LockTimeout

    return LockTimeout(f"another kubectl-teleport process held the lock on {where} for more than {wait:g}s; "
                       "try again, or look for a hung process")
