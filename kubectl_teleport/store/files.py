"""Safe file-system primitives: private directories held open, atomic writes, space reserved before asking the
network, and the cleanup of temp files that killed writers left behind.

Standard library only. Every operation on a directory's files goes through an open, checked descriptor of that
directory (`Dir`), so the checks and the open refer to the same objects even if a path component is swapped.

Ownership rule (the same on the hot path, `cache.read_fast`): a file or directory is trusted when it is ours
(or we are root), or when it carries a POSIX access ACL (only `init`, run by its owner or root, puts one
there). Other users never get any bit; group bits are accepted only as the mask of an ACL.

Temp files are named `.<name>.<pid>.tmp`; one whose pid is no longer alive belongs to a killed writer and is
removed (under the identity's lock) by `Dir.remove_stale_temps`.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from pathlib import Path

from ..errors import UnsafeState
from . import acl

DIR_MODE = 0o700
FILE_MODE = 0o600
RESERVE_SIZE = 16 * 1024  # room held for one cache entry or identity while the network is asked
_TEMP_RE = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.tmp$")
_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_O_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | getattr(os, "O_NONBLOCK", 0)


def temp_name(name: str, pid: int | None = None) -> str:
    """The temp file a writer with `pid` uses for `name`."""
    return f".{name}.{os.getpid() if pid is None else pid}.tmp"


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check_trusted(path: str | os.PathLike[str], st: os.stat_result, target: str | int) -> None:
    """Refuse an object of another owner (unless ACL-managed) or one others (or, without an ACL, the group)
    can use."""
    uid = os.geteuid()
    if st.st_uid != uid and uid != 0 and not acl.has_acl(target):
        raise UnsafeState(f"{path} is owned by uid {st.st_uid}, not by you; fix its owner "
                          "(or share it with `kubectl-teleport init`)")
    bits = stat.S_IMODE(st.st_mode)
    if bits & 0o007 or (bits & 0o070 and not acl.has_acl(target)):
        raise UnsafeState(f"{path} is readable by other users (mode {bits:o}); run: chmod go-rwx {path}")


def _mkdir_private(path: Path, mode: int) -> None:
    """mkdir with exactly `mode` whatever the umask (unless a default ACL is inherited)."""
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        return
    if not acl.has_acl(str(path)):
        os.chmod(path, mode)


def ensure_dir(path: str | os.PathLike[str], mode: int = DIR_MODE) -> Path:
    """Create `path` (and missing parents, also `mode`) whatever the umask; refuse a symlink or a non-directory;
    tighten an existing dir we own (keeping the mask of an ACL that `init` set)."""
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
        raise UnsafeState(f"refusing symlink: {path}; replace it with a real directory")
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeState(f"{path} is not a directory; move it away and retry")
    bits = stat.S_IMODE(st.st_mode)
    allowed = mode | (0o070 if bits & 0o070 and acl.has_acl(str(path)) else 0)
    if st.st_uid == os.geteuid() and bits & 0o077 & ~allowed:
        os.chmod(path, bits & allowed)
    return path


def check_private(path: str | os.PathLike[str]) -> os.stat_result:
    """Refuse a symlink, an object of another owner (unless ACL-managed), or one others can read."""
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise UnsafeState(f"refusing symlink: {path}; remove it and log in again")
    check_trusted(path, st, str(path))
    return st


def _write_all(fd: int, data: bytes, offset: int | None = None) -> None:
    view = memoryview(data)
    pos = 0
    while pos < len(view):
        if offset is None:
            pos += os.write(fd, view[pos:])
        else:
            pos += os.pwrite(fd, view[pos:], offset + pos)


def read_all(fd: int, limit: int) -> bytes:
    """Read until EOF or `limit` bytes (short reads loop)."""
    chunks, size = [], 0
    while size < limit:
        chunk = os.read(fd, limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """fsync a directory so a rename inside it survives a crash."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Reservation:
    """A temp file holding room for a write that happens later (after a network call).

    Made before asking the server, so a full, read-only or unwritable file system fails *before* anything is
    issued that could not be stored. `commit(data)` fills it and renames it into place; `discard()` drops it.
    """

    def __init__(self, directory: Dir, name: str, fd: int, mode: int, *, owns_dir: bool = False) -> None:
        self.directory, self.name, self._fd, self.mode = directory, name, fd, mode
        self.owns_dir = owns_dir  # close the directory's descriptor when done

    def _done(self) -> None:
        if self.owns_dir:
            self.directory.close()

    def commit(self, data: bytes) -> None:
        """Write `data` into the reserved file and rename it over `name` atomically."""
        if self._fd is None:
            raise RuntimeError("reservation already used")
        fd, self._fd = self._fd, None
        tmp = temp_name(self.name)
        try:
            _write_all(fd, data, 0)
            os.ftruncate(fd, len(data))
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            self.directory.unlink(tmp)
            self._done()
            raise
        os.close(fd)
        try:
            self.directory.replace(tmp, self.name)
        finally:
            self._done()

    def discard(self) -> None:
        """Drop the reserved file (nothing was written to `name`)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)
            self.directory.unlink(temp_name(self.name))
            self._done()

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.discard()


class Dir:
    """An open directory checked to be private (ours or ACL-shared, no access for others, not a symlink).

    File names are relative to the directory's descriptor; nothing is followed through a symlink.
    """

    def __init__(self, path: Path, fd: int) -> None:
        self.path, self.fd = path, fd

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, create: bool = False, mode: int = DIR_MODE) -> Dir:
        """Open (with `create`: make first) a private directory; UnsafeState for anything else."""
        path = Path(path)
        if create:
            ensure_dir(path, mode)
        try:
            fd, acl_target = _open_dir(path, path)
        except OSError as exc:
            raise _dir_error(path, exc) from None
        try:
            st = os.fstat(fd)
            check_trusted(path, st, acl_target)
        except BaseException:
            os.close(fd)
            raise
        return cls(path, fd)

    def sub(self, name: str, *, create: bool = False, mode: int = DIR_MODE) -> Dir:
        """Open a private subdirectory relative to this one."""
        path = self.path / name
        created = False
        if create:
            try:
                os.mkdir(name, mode, dir_fd=self.fd)
                created = True
            except FileExistsError:
                pass
        try:
            fd, acl_target = _open_dir(path, name, self.fd)
        except OSError as exc:
            raise _dir_error(path, exc) from None
        try:
            if created and not acl.has_acl(fd):
                os.fchmod(fd, mode)  # exactly `mode` whatever the umask
            check_trusted(path, os.fstat(fd), acl_target)
        except BaseException:
            os.close(fd)
            raise
        return Dir(path, fd)

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)

    def __enter__(self) -> Dir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # reading ------------------------------------------------------------------------------------------------

    def read(self, name: str, limit: int = 1 << 20) -> bytes:
        """A small private file's bytes; FileNotFoundError when absent; UnsafeState when it is not to be
        trusted (symlink, not a regular file, another owner, readable by others)."""
        try:
            fd = os.open(name, _O_READ, dir_fd=self.fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UnsafeState(f"refusing symlink: {self.path / name}; remove it") from None
            raise
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise UnsafeState(f"{self.path / name} is not a regular file; move it away")
            check_trusted(self.path / name, st, fd)
            return read_all(fd, limit)
        finally:
            os.close(fd)

    def exists(self, name: str) -> bool:
        try:
            os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        return True

    def names(self) -> list[str]:
        """The entries of the directory (sorted)."""
        fd = os.open(".", _O_DIR, dir_fd=self.fd)
        try:
            return sorted(os.listdir(fd))
        finally:
            os.close(fd)

    def writable(self) -> bool:
        """True when this process may create files here (a reader shared by `init` may not)."""
        return os.access(self.fd if os.access in os.supports_fd else self.path, os.W_OK | os.X_OK)

    # writing ------------------------------------------------------------------------------------------------

    def _open_temp(self, name: str, mode: int) -> int:
        tmp = temp_name(name)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, mode,
                     dir_fd=self.fd)
        try:
            os.fchmod(fd, mode)
            try:
                old = os.open(name, _O_READ, dir_fd=self.fd)
            except OSError:
                old = None
            try:
                if old is not None and not stat.S_ISREG(os.fstat(old).st_mode):
                    raise UnsafeState(f"{self.path / name} is not a regular file; move it away and retry")
                inherited = acl.inherited_acl(old, self.fd)
            finally:
                if old is not None:
                    os.close(old)
            if inherited is not None:
                os.setxattr(fd, acl.ACL_ACCESS, inherited)  # also sets the group bits to the ACL's mask
        except BaseException:
            os.close(fd)
            self.unlink(tmp)
            raise
        return fd

    def reserve(self, name: str, size: int = RESERVE_SIZE, mode: int = FILE_MODE, *,
                owns_dir: bool = False) -> Reservation:
        """Hold `size` bytes for a later atomic write of `name` (raises OSError now when there is no room).
        With `owns_dir` the reservation closes this directory when it is committed or discarded."""
        self._check_target(name)
        fd = self._open_temp(name, mode)
        try:
            if hasattr(os, "posix_fallocate"):
                try:
                    os.posix_fallocate(fd, 0, size)
                except OSError as exc:
                    if exc.errno not in (errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL):
                        raise
                    _write_all(fd, bytes(size), 0)
            else:
                _write_all(fd, bytes(size), 0)
        except BaseException:
            os.close(fd)
            self.unlink(temp_name(name))
            raise
        return Reservation(self, name, fd, mode, owns_dir=owns_dir)

    def write(self, name: str, data: bytes, mode: int = FILE_MODE) -> None:
        """Write `name` atomically: temp file, fsync, rename, fsync of the directory.

        A reader sees the old file or the new one, never a mix. The new file gets `mode` whatever the umask,
        plus the access ACL of the file it replaces (or the directory's default ACL), so the reader entries
        `init` set survive every rewrite.
        """
        self._check_target(name)
        fd = self._open_temp(name, mode)
        tmp = temp_name(name)
        try:
            _write_all(fd, data)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            self.unlink(tmp)
            raise
        os.close(fd)
        self.replace(tmp, name)

    def _check_target(self, name: str) -> None:
        try:
            st = os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISLNK(st.st_mode):
            raise UnsafeState(f"refusing to write through symlink {self.path / name}; remove it")
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeState(f"{self.path / name} is not a regular file; move it away and retry")

    def replace(self, src: str, dst: str) -> None:
        """Rename `src` over `dst` inside this directory and make it durable (the temp goes on failure)."""
        try:
            os.replace(src, dst, src_dir_fd=self.fd, dst_dir_fd=self.fd)
        except BaseException:
            self.unlink(src)
            raise
        os.fsync(self.fd)

    def unlink(self, name: str) -> bool:
        """Remove a file if it is there; True when something was removed."""
        try:
            os.unlink(name, dir_fd=self.fd)
        except FileNotFoundError:
            return False
        return True

    def remove_stale_temps(self) -> list[str]:
        """Delete temp files whose writer is dead (a kill between write and rename); their names."""
        removed = []
        for entry in self.names():
            m = _TEMP_RE.match(entry)
            if m and not _pid_alive(int(m.group("pid"))) and self.unlink(entry):
                removed.append(entry)
        if removed:
            os.fsync(self.fd)
        return removed

    def temps(self) -> list[str]:
        """Every temp file here, of live or dead writers."""
        return [n for n in self.names() if _TEMP_RE.match(n)]


def _open_dir(path: Path, name: str | Path, dir_fd: int | None = None) -> tuple[int, str | int]:
    """Open a directory without following a symlink: readable when we may read it, else (a reader shared by
    `init`, with search permission only) an O_PATH handle on Linux. Also returns what to ask for its ACL."""
    try:
        fd = os.open(name, _O_DIR, dir_fd=dir_fd)
    except PermissionError:
        o_path = getattr(os, "O_PATH", 0)
        if not o_path:
            raise
        fd = os.open(name, o_path | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        return fd, str(path)  # extended attributes cannot be read through an O_PATH handle: use the path
    return fd, fd


def _dir_error(path: Path, exc: OSError) -> Exception:
    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
        kind = "a symlink" if os.path.islink(path) else "not a directory"
        return UnsafeState(f"{path} is {kind}; replace it with a real directory")
    if exc.errno == errno.EACCES:
        return UnsafeState(f"cannot open {path}: permission denied; it belongs to another user (its owner can "
                           "share it with `kubectl-teleport init --reader-user`)")
    if exc.errno == errno.ENAMETOOLONG:
        return UnsafeState(f"cannot open {str(path)[:80]}...: the path is too long")
    return exc


def atomic_write(path: str | os.PathLike[str], data: bytes, mode: int = FILE_MODE) -> None:
    """Write a file outside the data dir atomically (its directory need not be private: e.g. a kubeconfig)."""
    path = Path(path)
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        Dir(path.parent, fd).write(path.name, data, mode)
    finally:
        os.close(fd)
