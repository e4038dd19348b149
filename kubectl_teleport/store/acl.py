"""POSIX ACLs in the kernel's extended-attribute format (`system.posix_acl_*`), as `init` writes them.

Linux only: where the platform has no extended attributes (macOS), there are no ACLs and every function here
reports none. The one "does this object carry an ACL" check is `cache.has_acl` (the hot path needs it too).
"""

from __future__ import annotations

import errno
import os
import struct

from ..cache import has_acl

__all__ = ["ACL_ACCESS", "ACL_DEFAULT", "decode_acl", "encode_acl", "has_acl", "inherited_acl", "supported"]

ACL_ACCESS = "system.posix_acl_access"
ACL_DEFAULT = "system.posix_acl_default"
ACL_VERSION = 2
ACL_USER_OBJ, ACL_USER, ACL_GROUP_OBJ, ACL_GROUP, ACL_MASK, ACL_OTHER = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
ACL_UNDEFINED_ID = 0xFFFFFFFF
_HEADER = struct.Struct("<I")
_ENTRY = struct.Struct("<HHI")
NO_ACL_ERRNOS = (errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENODATA, errno.ENOENT)


def supported() -> bool:
    """True when this platform has extended attributes at all."""
    return hasattr(os, "getxattr")


def encode_acl(entries: list[tuple[int, int, int]]) -> bytes:
    """The `system.posix_acl_*` value for (tag, perm, id) entries (sorted as the kernel requires)."""
    ordered = sorted(entries, key=lambda e: (e[0], e[2] if e[0] in (ACL_USER, ACL_GROUP) else 0))
    return _HEADER.pack(ACL_VERSION) + b"".join(_ENTRY.pack(t, p, i) for t, p, i in ordered)


def decode_acl(data: bytes) -> list[tuple[int, int, int]]:
    """(tag, perm, id) entries of an ACL xattr; ValueError when it is not version 2."""
    if len(data) < 4 or (len(data) - 4) % _ENTRY.size or _HEADER.unpack_from(data)[0] != ACL_VERSION:
        raise ValueError("not a POSIX ACL (version 2)")
    return [_ENTRY.unpack_from(data, off) for off in range(4, len(data), _ENTRY.size)]


def unsupported_error(exc: OSError) -> bool:
    """True when `exc` says the file system has no POSIX ACL support."""
    return exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP)


def inherited_acl(old_fd: int | None, dir_fd: int) -> bytes | None:
    """The access ACL a rewritten file must carry: the replaced file's, else its directory's default ACL."""
    if not supported():
        return None
    for target, name in ((old_fd, ACL_ACCESS), (dir_fd, ACL_DEFAULT)):
        if target is None:
            continue
        try:
            value = os.getxattr(target, name)
        except OSError as exc:
            if exc.errno not in NO_ACL_ERRNOS:
                raise
            continue
        if value:
            # a default ACL applied at create time has its mask cut to our 0600: re-apply it whole
            return value
    return None


def set_acl(path: str | os.PathLike[str], name: str, value: bytes) -> None:
    """Write one ACL xattr (never through a symlink)."""
    os.setxattr(path, name, value, follow_symlinks=False)


def remove_acls(path: str | os.PathLike[str], directory: bool) -> None:
    """Drop the access ACL (and a directory's default ACL); quiet when there is none."""
    if not supported():
        return
    for name in (ACL_ACCESS, ACL_DEFAULT) if directory else (ACL_ACCESS,):
        try:
            os.removexattr(path, name, follow_symlinks=False)
        except OSError:
            pass
