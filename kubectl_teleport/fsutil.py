"""Safe file-system primitives for the state directory: atomic writes, strict modes, no symlinks, and the
POSIX ACLs that `kubectl-teleport init` sets for a bot user and a reader user.

Standard library only.

Ownership rule (the same on the hot path, cache.read_fast): a state file or directory is trusted when it is
ours (or we are root), or when it carries a POSIX access ACL (only `init`, run by its owner or root, puts one
there). Other users never get any bit; group bits are accepted only as the
mask of an ACL.
"""

from __future__ import annotations

import errno
import os
import stat
import struct
from pathlib import Path

from .cache import has_acl
from .errors import UNSAFE_STATE, PluginError

DIR_MODE = 0o700
FILE_MODE = 0o600

ACL_ACCESS = "system.posix_acl_access"
ACL_DEFAULT = "system.posix_acl_default"
ACL_VERSION = 2
ACL_USER_OBJ, ACL_USER, ACL_GROUP_OBJ, ACL_GROUP, ACL_MASK, ACL_OTHER = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
ACL_UNDEFINED_ID = 0xFFFFFFFF
_ACL_HEADER = struct.Struct("<I")
_ACL_ENTRY = struct.Struct("<HHI")
_NO_ACL_ERRNOS = (errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENODATA)


def _mkdir_private(path: Path, mode: int) -> None:
    """mkdir with exactly `mode` whatever the umask (unless a default ACL is inherited)."""
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        return
    if not has_acl(path):
        os.chmod(path, mode)


def ensure_dir(path: Path, mode: int = DIR_MODE) -> Path:
    """Create `path` (and missing parents, also `mode`) whatever the umask; refuse a symlink; tighten an
    existing dir we own (keeping the mask of an ACL that `init` set)."""
    path = Path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        missing = []
        parent = path.parent
        while not os.path.lexists(parent) and parent != parent.parent:
            missing.append(parent)
            parent = parent.parent
        for p in reversed(missing):
            _mkdir_private(p, mode)
        _mkdir_private(path, mode)
        st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise PluginError(f"refusing symlink in state directory: {path}; replace it with a real directory",
                          UNSAFE_STATE)
    if not stat.S_ISDIR(st.st_mode):
        raise PluginError(f"{path} is not a directory; move it away and retry", UNSAFE_STATE)
    bits = stat.S_IMODE(st.st_mode)
    allowed = mode | (0o070 if bits & 0o070 and has_acl(path) else 0)
    if st.st_uid == os.geteuid() and bits & 0o077 & ~allowed:
        os.chmod(path, bits & allowed)
    return path


def check_private(path: Path) -> os.stat_result:
    """Refuse a symlink, an object of another owner (unless ACL-managed), or one others can read."""
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise PluginError(f"refusing symlink in state directory: {path}; remove it and log in again", UNSAFE_STATE)
    _check_owner_and_mode(path, st)
    return st


def _check_owner_and_mode(path: Path, st: os.stat_result, fd: int | None = None) -> None:
    target = path if fd is None else fd
    uid = os.geteuid()
    if st.st_uid != uid and uid != 0:
        if not has_acl(target):
            raise PluginError(f"{path} is owned by uid {st.st_uid}, not by you; fix its owner "
                              "(or share it with `kubectl-teleport init`)", UNSAFE_STATE)
    _refuse_shared(path, st, fd)


def _refuse_shared(path: Path, st: os.stat_result, fd: int | None = None) -> None:
    """Refuse a file others can read; group bits are allowed only as the mask of a POSIX ACL."""
    bits = stat.S_IMODE(st.st_mode)
    if bits & 0o007 or (bits & 0o070 and not has_acl(path if fd is None else fd)):
        raise PluginError(f"{path} is readable by other users (mode {bits:o}); run: chmod go-rwx {path}",
                          UNSAFE_STATE)


# POSIX ACLs in the kernel's extended-attribute format ---------------------------------------------------------

def encode_acl(entries: list[tuple[int, int, int]]) -> bytes:
    """The `system.posix_acl_*` value for (tag, perm, id) entries (sorted as the kernel requires)."""
    ordered = sorted(entries, key=lambda e: (e[0], e[2] if e[0] in (ACL_USER, ACL_GROUP) else 0))
    return _ACL_HEADER.pack(ACL_VERSION) + b"".join(_ACL_ENTRY.pack(t, p, i) for t, p, i in ordered)


def decode_acl(data: bytes) -> list[tuple[int, int, int]]:
    """(tag, perm, id) entries of an ACL xattr; ValueError when it is not version 2."""
    if len(data) < 4 or (len(data) - 4) % _ACL_ENTRY.size or _ACL_HEADER.unpack_from(data)[0] != ACL_VERSION:
        raise ValueError("not a POSIX ACL (version 2)")
    return [_ACL_ENTRY.unpack_from(data, off) for off in range(4, len(data), _ACL_ENTRY.size)]


def acl_supported_error(exc: OSError) -> bool:
    """True when `exc` says the file system has no POSIX ACL support."""
    return exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP)


def _acl_for_new_file(target: Path, fd: int) -> bytes | None:
    """The access ACL a rewritten file must carry: the old file's, or its directory's default ACL."""
    try:
        return os.getxattr(target, ACL_ACCESS, follow_symlinks=False)
    except OSError as exc:
        if exc.errno not in (errno.ENOENT, *_NO_ACL_ERRNOS):
            raise
    try:
        default = os.getxattr(target.parent, ACL_DEFAULT)
    except OSError:
        return None
    # a default ACL already applied at create time, but with the mask cut to our 0600: re-apply it whole
    return default or None


def atomic_write(path: Path, data: bytes, mode: int = FILE_MODE, *, state: bool = False) -> None:
    """Write `data` to `path` atomically: temp file in the same dir, fsync, rename, fsync dir.

    A reader sees the old file or the new one, never a mix. The target may not be a symlink; with `state`
    (files of the data dir) the directory must be private too (ours or ACL-managed), checked on every write.
    The new file gets `mode` whatever the umask, plus the access ACL of the file it replaces (or the
    directory's default ACL), so the reader entries `init` set survive every rewrite.
    """
    path = Path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None:
        if stat.S_ISLNK(st.st_mode):
            raise PluginError(f"refusing to write through symlink {path}; remove it", UNSAFE_STATE)
        if not stat.S_ISREG(st.st_mode):
            raise PluginError(f"{path} is not a regular file; move it away and retry", UNSAFE_STATE)
    if state:
        check_private(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)
        acl = _acl_for_new_file(path, fd)
        if acl is not None:
            os.setxattr(fd, ACL_ACCESS, acl)  # also sets the group bits to the ACL's mask
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


def fsync_dir(path: Path) -> None:
    """fsync a directory so a rename inside it survives a crash."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_private(path: Path, limit: int = 1 << 20) -> bytes:
    """Read a small private file without following a symlink; refuse one others can read or of a stranger."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise PluginError(f"refusing symlink in state directory: {path}; remove it and log in again",
                              UNSAFE_STATE) from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise PluginError(f"{path} is not a regular file; move it away and log in again", UNSAFE_STATE)
        _check_owner_and_mode(Path(path), st, fd)
        return os.read(fd, limit)
    finally:
        os.close(fd)


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
