"""`kubectl-teleport init`: prepare a data dir shared by a bot user and a reader user, as `tbot init` does.

The owner keeps read-write; POSIX ACLs add named entries for the bot user (read-write everywhere) and the
reader user (search the data dir, read `kube/*.cred` only: never the bot's renewable identity), a mask, and
nothing for group and other. Default ACLs on both directories make new files inherit the entries, and
`store.files` re-applies them on every rewrite (a new file's mask would otherwise be cut to 0600).
The ACLs are written as the kernel's `system.posix_acl_*` extended attributes (no setfacl needed).

Both users must be able to run the installed `kubectl-teleport` (its launcher and the interpreter it names):
an interpreter under a 0700 home (a pyenv, say) is refused up front, naming the path.
"""

from __future__ import annotations

import argparse
import grp
import os
import pwd
import stat
from pathlib import Path

from .. import launcher
from ..errors import UnsafeState, UsageError
from ..outputs import kubeconfig
from ..store import acl, files
from ..store.acl import ACL_GROUP_OBJ, ACL_MASK, ACL_OTHER, ACL_UNDEFINED_ID, ACL_USER, ACL_USER_OBJ
from ..store.datadir import DataDir

MODES = ("required", "try", "off")
R, W, X = 4, 2, 1


def _user(name: str, flag: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
    except (KeyError, OverflowError):
        raise UsageError(f"unknown user {name[:64]!r} for {flag}; create it first (useradd)") from None


def _owner(owner: str | None, bot: pwd.struct_passwd) -> tuple[int, int, str]:
    if not owner:
        return bot.pw_uid, bot.pw_gid, f"{bot.pw_name}:{grp.getgrgid(bot.pw_gid).gr_name}"
    user, sep, group = owner.partition(":")
    if not user:
        raise UsageError(f"bad --owner {owner[:64]!r}: use USER:GROUP or USER")
    pw = _user(user, "--owner")
    if not sep or not group:
        return pw.pw_uid, pw.pw_gid, f"{pw.pw_name}:{grp.getgrgid(pw.pw_gid).gr_name}"
    try:
        gr = grp.getgrgid(int(group)) if group.isdigit() else grp.getgrnam(group)
    except (KeyError, OverflowError):
        raise UsageError(f"unknown group {group[:64]!r} for --owner; create it first (groupadd)") from None
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
    return {"root": acl.encode_acl(_entries(R | W | X, root, owner_uid)),
            "root_default": acl.encode_acl(_entries(R | W, root_default, owner_uid)),
            "kube": acl.encode_acl(_entries(R | W | X, kube, owner_uid)),
            "kube_default": acl.encode_acl(_entries(R | W, kube_default, owner_uid))}


_set_acl, _remove_acls = acl.set_acl, acl.remove_acls


def unreachable_for(path: str, pw: pwd.struct_passwd) -> str | None:
    """The first path (a directory on the way, or the file itself) that user `pw` could not execute, else
    None. Mode bits only (owner, group membership, other); root may run anything executable."""
    if pw.pw_uid == 0:
        return None
    groups = {pw.pw_gid, *(g.gr_gid for g in grp.getgrall() if pw.pw_name in g.gr_mem)}
    target = os.path.realpath(path)
    parts = Path(target).parts
    for i in range(1, len(parts) + 1):
        here = os.path.join(*parts[:i])
        try:
            st = os.stat(here)
        except OSError:
            return here
        bits = st.st_mode
        allowed = (bits & stat.S_IXUSR if st.st_uid == pw.pw_uid else
                   bits & stat.S_IXGRP if st.st_gid in groups else bits & stat.S_IXOTH)
        if not allowed:
            return here
    return None


def _interpreter(command: str) -> str | None:
    """The interpreter the installed launcher runs (launcher.py), if any."""
    argv = launcher.interpreter(command)
    return argv[0] if argv else None


def check_runnable(users: list[tuple[str, pwd.struct_passwd]]) -> None:
    """UsageError naming the path when a user could not run the installed kubectl-teleport."""
    command = kubeconfig.plugin_command()
    paths = [command] + [p for p in [_interpreter(command)] if p]
    for flag, pw in users:
        for path in paths:
            blocked = unreachable_for(path, pw)
            if blocked:
                raise UsageError(f"{pw.pw_name} ({flag}) cannot run {path}: {blocked} is not executable or "
                                 "searchable for that user; install kubectl-teleport where both users can run "
                                 "it (./install.sh --prefix /opt/kubectl-teleport) and run init again")


def _existing_files(dd: DataDir) -> list[tuple[Path, str]]:
    """Files already in the data dir (init after login): each with the directory whose default applies."""
    found = []
    for parent, key in ((dd.root, "root_default"), (dd.kube_dir, "kube_default")):
        for child in sorted(parent.iterdir()):
            st = os.lstat(child)
            if stat.S_ISLNK(st.st_mode):
                raise UnsafeState(f"refusing symlink in state directory: {child}; remove it")
            if stat.S_ISREG(st.st_mode):
                found.append((child, key))
    return found


def init_command(data_dir: str, bot_user: str, reader_user: str, owner: str | None = None,
                 acls: str = "try") -> list[str]:
    """Create (or fix) the data dir for `bot_user` with read access for `reader_user`; lines to print."""
    if acls not in MODES:
        raise UsageError(f"bad --acls {acls!r}: use required, try or off")
    bot, reader = _user(bot_user, "--bot-user"), _user(reader_user, "--reader-user")
    uid, gid, owner_text = _owner(owner, bot)
    check_runnable([("--bot-user", bot), ("--reader-user", reader)])
    dd = DataDir(data_dir)
    dd.create()
    for d in (dd.root, dd.kube_dir):
        files.check_private(d)
    existing = _existing_files(dd)
    try:
        for path in (dd.root, dd.kube_dir, *(f for f, _ in existing)):
            os.chown(path, uid, gid, follow_symlinks=False)
    except PermissionError:
        raise UsageError(f"cannot give {dd.root} to {owner_text}: run `kubectl-teleport init` as root "
                          "(sudo) or as that user") from None
    os.chmod(dd.root, files.DIR_MODE)
    os.chmod(dd.kube_dir, files.DIR_MODE)
    for path, _ in existing:
        os.chmod(path, files.FILE_MODE)
    lines = [f"Prepared {dd.root} (owner {owner_text}, mode 0700, files 0600)."]
    applied = False
    if acls != "off":
        values = plan(uid, bot.pw_uid, reader.pw_uid)
        try:
            _set_acl(dd.root, acl.ACL_ACCESS, values["root"])
            _set_acl(dd.root, acl.ACL_DEFAULT, values["root_default"])
            _set_acl(dd.kube_dir, acl.ACL_ACCESS, values["kube"])
            _set_acl(dd.kube_dir, acl.ACL_DEFAULT, values["kube_default"])
            for path, key in existing:
                _set_acl(path, acl.ACL_ACCESS, values[key])
            applied = True
        except OSError as exc:
            for path in (dd.root, dd.kube_dir):
                _remove_acls(path, True)
            if not acl.unsupported_error(exc):
                raise UnsafeState(f"cannot set POSIX ACLs on {dd.root} ({exc.strerror}); run `kubectl-teleport "
                                  "init` as root or as the directory's owner") from None
            if acls == "required":
                raise UnsafeState(f"the file system of {dd.root} does not support POSIX ACLs (--acls required); "
                                  "choose a directory on ext4/xfs/btrfs/tmpfs, or use --acls try") \
                    from None
            lines.append(f"POSIX ACLs are not supported on this file system: only {owner_text.split(':')[0]} "
                         "can use the directory.")
    else:
        for path in (dd.root, dd.kube_dir):
            _remove_acls(path, True)
        for path, _ in existing:
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
        if not mode & stat.S_IXOTH and not acl.has_acl(parent):
            return [f"Note: {parent} is not searchable by other users, so {reader} cannot reach {root}; "
                    f"run: chmod o+x {parent}"]
    return []


def run(args: argparse.Namespace) -> int:
    """`kubectl-teleport init`."""
    for line in init_command(args.data_dir, args.bot_user, args.reader_user, args.owner, args.acls):
        print(line)
    return 0
