"""Safe file-system primitives for the state directory: atomic writes, strict modes, no symlinks.

Standard library only.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import UNSAFE_STATE, PluginError

DIR_MODE = 0o700
FILE_MODE = 0o600


def ensure_dir(path: Path, mode: int = DIR_MODE) -> Path:
    """Create `path` (and parents) with `mode`; refuse a symlink; tighten an existing dir we own."""
    path = Path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.mkdir(path, mode)
        except FileExistsError:
            pass
        st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise PluginError(f"refusing symlink in state directory: {path}; replace it with a real directory",
                          UNSAFE_STATE)
    if not stat.S_ISDIR(st.st_mode):
        raise PluginError(f"{path} is not a directory; move it away and retry", UNSAFE_STATE)
    if st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) & 0o077 & ~mode:
        os.chmod(path, stat.S_IMODE(st.st_mode) & mode)
    return path


def check_private(path: Path) -> os.stat_result:
    """Refuse a symlink, a file of another owner, or one readable by group/other (without an ACL mask)."""
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise PluginError(f"refusing symlink in state directory: {path}; remove it and log in again", UNSAFE_STATE)
    if st.st_uid != os.geteuid() and os.geteuid() != 0:
        raise PluginError(f"{path} is owned by uid {st.st_uid}, not by you; fix its owner", UNSAFE_STATE)
    _refuse_shared(path, st)
    return st


def has_acl(target: Path | int) -> bool:
    """True when `target` (a path or fd) carries a POSIX access ACL (as `kubectl-teleport init` sets)."""
    try:
        return bool(os.getxattr(target, "system.posix_acl_access"))
    except OSError:
        return False


def _refuse_shared(path: Path, st: os.stat_result, fd: int | None = None) -> None:
    """Refuse a file others can read; group bits are allowed only as the mask of a POSIX ACL."""
    bits = stat.S_IMODE(st.st_mode)
    if bits & 0o007 or (bits & 0o070 and not has_acl(path if fd is None else fd)):
        raise PluginError(f"{path} is readable by other users (mode {bits:o}); run: chmod go-rwx {path}",
                          UNSAFE_STATE)


def fsync_dir(path: Path) -> None:
    """fsync a directory so a rename inside it survives a crash."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, mode: int = FILE_MODE) -> None:
    """Write `data` to `path` atomically: temp file in the same dir, fsync, rename, fsync dir.

    A reader sees the old file or the new one, never a mix. The target may not be a symlink.
    """
    path = Path(path)
    try:
        if stat.S_ISLNK(os.lstat(path).st_mode):
            raise PluginError(f"refusing to write through symlink {path}; remove it", UNSAFE_STATE)
    except FileNotFoundError:
        pass
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        _unlink_quietly(tmp)
        raise
    os.close(fd)
    try:
        os.replace(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    fsync_dir(path.parent)


def read_private(path: Path, limit: int = 1 << 20) -> bytes:
    """Read a small private file without following a symlink; refuse one others can read."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        _refuse_shared(path, os.fstat(fd), fd)
        return os.read(fd, limit)
    finally:
        os.close(fd)


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
