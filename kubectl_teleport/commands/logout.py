"""`kubectl-teleport logout`: remove the identity, its certificates (and any temp file holding a key), the
kubeconfig entries and destination files login wrote, and the identity Secret of `--store-identity` (only if
nobody wrote it since this data dir did). The lock file stays (removing an flock file others may
wait on is a race); it holds no key."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import NotLoggedIn, PluginError, UnsafeState
from ..outputs import kubeconfig
from ..store.datadir import resolve

LOCK_WAIT = 60.0


def logout(data_dir: str | None) -> list[str]:
    """Remove everything login wrote; the lines to print."""
    dd = resolve(data_dir)
    if not dd.exists():
        raise NotLoggedIn(f"nothing to log out of: {dd.root} does not exist")
    dd.check()
    if not dd.writable():
        raise UnsafeState(f"this user can only read {dd.root}; logging out is the bot user's job: run "
                          "`kubectl-teleport logout` as the owner of the data dir")
    out: list[str] = []
    lock = dd.acquire(LOCK_WAIT)
    try:
        try:
            cfg = dd.load_config() if dd.has_config() else None
        except PluginError as err:
            cfg = None
            out.append(f"Warning: {err}; removing the files anyway")
        if cfg and cfg.identity_secret:  # before the data dir forgets which version it last wrote
            from ..store.identity_secret import IdentitySecret

            out.append(IdentitySecret(dd, cfg.identity_secret).delete())
        for entry in cfg.kubeconfigs if cfg else []:
            out.append(_remove_context(Path(entry.path), entry.name, entry.standalone))
        if cfg and cfg.destinations:
            from ..outputs.destination import remove

            for dest in cfg.destinations:
                out.extend(remove(dest.path))
        removed = dd.remove_all()
    finally:
        lock.release()
    temps = [n for n in removed if n.endswith(".tmp")]
    if temps:
        out.append(f"Removed {len(temps)} temporary file(s) a killed process had left")
    out.append(f"Logged out: removed the identity and certificates in {dd.root} (its lock file stays)")
    return out


def _remove_context(path: Path, name: str, standalone: bool) -> str:
    """Drop one kubeconfig entry login wrote; a kubeconfig that cannot be edited is reported, not fatal."""
    try:
        if standalone:
            path.unlink(missing_ok=True)
        else:
            kubeconfig.remove(path, name)
    except (PluginError, OSError) as err:
        return f"Warning: could not remove context {name} from {path} ({err}); remove it by hand"
    return f"Removed context {name} from {path}"


def run(args: argparse.Namespace) -> int:
    """`kubectl-teleport logout`."""
    for line in logout(args.data_dir):
        print(line)
    return 0



