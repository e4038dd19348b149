"""`kubectl-teleport init`: prepare a data dir shared by a bot user and a reader user, as `tbot init` does.

The owner keeps read-write; POSIX ACLs add named entries for the bot user (read-write everywhere) and the
reader user (search the data dir, read `kube/*.cred` only: never the bot's renewable identity), a mask, and
nothing for group and other. Default ACLs on both directories make new files inherit the entries, and
`fsutil.atomic_write` re-applies them on every rewrite (a new file's mask would otherwise be cut to 0600).
The ACLs are written as the kernel's `system.posix_acl_*` extended attributes (no setfacl needed).
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from pathlib import Path

from . import fsutil
from .datadir import DataDir
from .errors import UNSAFE_STATE, USAGE, PluginError
from .fsutil import ACL_GROUP_OBJ, ACL_MASK, ACL_OTHER, ACL_UNDEFINED_ID, ACL_USER, ACL_USER_OBJ

MODES = ("required", "try", "off")
R, W, X = 4, 2, 1


def _user(name: str, flag: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
    except (KeyError, OverflowError):
        raise PluginError(f"unknown user {name[:64]!r} for {flag}; create it first (useradd)", USAGE) from None


def _owner(owner: str | None, bot: pwd.struct_passwd) -> tuple[int, int, str]:
    if not owner:
        return bot.pw_uid, bot.pw_gid, f"{bot.pw_name}:{grp.getgrgid(bot.pw_gid).gr_name}"
    user, sep, group = owner.partition(":")
    if not user:
        raise PluginError(f"bad --owner {owner[:64]!r}: use USER:GROUP or USER", USAGE)
    pw = _user(user, "--owner")
    if not sep or not group:
        return pw.pw_uid, pw.pw_gid, f"{pw.pw_name}:{grp.getgrgid(pw.pw_gid).gr_name}"
    try:
        gr = grp.getgrgid(int(group)) if group.isdigit() else grp.getgrnam(group)
    except (KeyError, OverflowError):
        raise PluginError(f"unknown group {group[:64]!r} for --owner; create it first (groupadd)", USAGE) from None
    return pw.pw_uid, gr.gr_gid, f"{pw.pw_name}:{gr.gr_name}"


def _entries(owner_perm: int, named: dict[int, int], owner_uid: int) -> list[tuple[int, int, int]]:
    """A minimal-plus-named ACL: owner, named users (not the owner), no group, mask = union, no other."""
    users = {uid: perm for uid, perm in named.items() if uid != owner_uid and perm}
    mask = 0
    for perm in users.values():
        mask |= perm
    entries = [(ACL_USER_OBJ, owner_perm, ACL_UNDEFINED_ID), (ACL_GROUP_OBJ, 0, ACL_UNDEFINED_ID),
               (ACL_OTHER, 0, ACL_UNDEFINED_ID)]
    entries += [(ACL_USER, perm, uid) for uid, perm in users.items()]
    if users:
        entries.append((ACL_MASK, mask, ACL_UNDEFINED_ID))
    return entries


def _named(pairs: list[tuple[int, int]]) -> dict[int, int]:
    out: dict[int, int] = {}
    for uid, perm in pairs:
        out[uid] = out.get(uid, 0) | perm
    return out


def plan(owner_uid: int, bot_uid: int, reader_uid: int) -> dict[str, bytes]:
    """The four ACL values: (root|kube) x (access|default)."""
    root = _named([(bot_uid, R | W | X), (reader_uid, X)])
    root_default = _named([(bot_uid, R | W)])
    kube = _named([(bot_uid, R | W | X), (reader_uid, R | X)])
    kube_default = _named([(bot_uid, R | W), (reader_uid, R)])
    return {"root": fsutil.encode_acl(_entries(R | W | X, root, owner_uid)),
            "root_default": fsutil.encode_acl(_entries(R | W, root_default, owner_uid)),
            "kube": fsutil.encode_acl(_entries(R | W | X, kube, owner_uid)),
            "kube_default": fsutil.encode_acl(_entries(R | W, kube_default, owner_uid))}


def _set_acl(path: Path, name: str, value: bytes) -> None:
    os.setxattr(path, name, value, follow_symlinks=False)


def _remove_acls(path: Path, directory: bool) -> None:
    for name in (fsutil.ACL_ACCESS, fsutil.ACL_DEFAULT) if directory else (fsutil.ACL_ACCESS,):
        try:
            os.removexattr(path, name, follow_symlinks=False)
        except OSError:
            pass


def _existing_files(dd: DataDir) -> list[tuple[Path, str]]:
    """Files already in the data dir (init after login): each with the directory whose default applies."""
    found = []
    for parent, key in ((dd.root, "root_default"), (dd.kube_dir, "kube_default")):
        for child in sorted(parent.iterdir()):
            st = os.lstat(child)
            if stat.S_ISLNK(st.st_mode):
                raise PluginError(f"refusing symlink in state directory: {child}; remove it", UNSAFE_STATE)
            if stat.S_ISREG(st.st_mode):
                found.append((child, key))
    return found


def init_command(data_dir: str, bot_user: str, reader_user: str, owner: str | None = None,
                 acls: str = "try") -> list[str]:
    """Create (or fix) the data dir for `bot_user` with read access for `reader_user`; lines to print."""
    if acls not in MODES:
        raise PluginError(f"bad --acls {acls!r}: use required, try or off", USAGE)
    bot, reader = _user(bot_user, "--bot-user"), _user(reader_user, "--reader-user")
    uid, gid, owner_text = _owner(owner, bot)
    dd = DataDir(Path(data_dir).expanduser())
    dd.create()
    for d in (dd.root, dd.kube_dir):
        fsutil.check_private(d)
    files = _existing_files(dd)
    try:
        for path in (dd.root, dd.kube_dir, *(f for f, _ in files)):
            os.chown(path, uid, gid, follow_symlinks=False)
    except PermissionError:
        raise PluginError(f"cannot give {dd.root} to {owner_text}: run `kubectl-teleport init` as root "
                          "(sudo) or as that user", USAGE) from None
    os.chmod(dd.root, fsutil.DIR_MODE)
    os.chmod(dd.kube_dir, fsutil.DIR_MODE)
    for path, _ in files:
        os.chmod(path, fsutil.FILE_MODE)
    lines = [f"Prepared {dd.root} (owner {owner_text}, mode 0700, files 0600)."]
    applied = False
    if acls != "off":
        acl = plan(uid, bot.pw_uid, reader.pw_uid)
        try:
            _set_acl(dd.root, fsutil.ACL_ACCESS, acl["root"])
            _set_acl(dd.root, fsutil.ACL_DEFAULT, acl["root_default"])
            _set_acl(dd.kube_dir, fsutil.ACL_ACCESS, acl["kube"])
            _set_acl(dd.kube_dir, fsutil.ACL_DEFAULT, acl["kube_default"])
            for path, key in files:
                _set_acl(path, fsutil.ACL_ACCESS, acl[key])
            applied = True
        except OSError as exc:
            for path in (dd.root, dd.kube_dir):
                _remove_acls(path, True)
            if not fsutil.acl_supported_error(exc):
                raise PluginError(f"cannot set POSIX ACLs on {dd.root} ({exc.strerror}); run `kubectl-teleport "
                                  "init` as root or as the directory's owner", UNSAFE_STATE) from None
            if acls == "required":
                raise PluginError(f"the file system of {dd.root} does not support POSIX ACLs (--acls required); "
                                  "choose a directory on ext4/xfs/btrfs/tmpfs, or use --acls try", UNSAFE_STATE) \
                    from None
            lines.append(f"POSIX ACLs are not supported on this file system: only {owner_text.split(':')[0]} "
                         "can use the directory.")
    else:
        for path in (dd.root, dd.kube_dir):
            _remove_acls(path, True)
        for path, _ in files:
            _remove_acls(path, False)
    if applied:
        lines.append(f"ACLs: {bot.pw_name} read-write; {reader.pw_name} read-only on {dd.kube_dir}/*.cred "
                     "(not the bot identity); group and other: none.")
        lines += _reach_warnings(dd.root, reader.pw_name)
    lines.append(f"Next, as {bot.pw_name}: kubectl-teleport login --data-dir {dd.root} --kubeconfig PATH ... "
                 f"and kubectl-teleport start --data-dir {dd.root} (keeps the certificates fresh for "
                 f"{reader.pw_name}).")
    return lines


def _reach_warnings(root: Path, reader: str) -> list[str]:
    """Warn when a parent directory keeps the reader from reaching the data dir."""
    for parent in root.parents:
        try:
            mode = os.stat(parent).st_mode
        except OSError:
            continue
        if not mode & stat.S_IXOTH and not fsutil.has_acl(parent):
            return [f"Note: {parent} is not searchable by other users, so {reader} cannot reach {root}; "
                    f"run: chmod o+x {parent}"]
    return []
