"""The devcluster's own small file helpers (it shares nothing with the plugin but the neutral `pki`)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

DIR_MODE, FILE_MODE = 0o700, 0o600


class UnsafePath(Exception):
    """A state path that is a symlink, not ours, or open to other users."""


def ensure_dir(path: Path) -> Path:
    """Create a private directory (parents too); refuse a symlink."""
    path = Path(path)
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise UnsafePath(f"{path} is not a directory")
    if st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) & 0o077:
        os.chmod(path, DIR_MODE)
    return path


def check_private(path: Path) -> None:
    """Refuse a symlink or a file others may read."""
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode) or stat.S_IMODE(st.st_mode) & 0o077:
        raise UnsafePath(f"{path} is a symlink or readable by other users; fix it (chmod 600)")


def write_file(path: Path, data: bytes, mode: int = FILE_MODE) -> None:
    """Write atomically (temp file, fsync, rename) with exactly `mode`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
