"""Console-script entry point. A cache hit of `credentials` is answered here with the standard library only;
everything else is handed to the full CLI, which imports what it needs."""

from __future__ import annotations

import os
import sys
import time

from . import cache, execcred


def _fast_args(args: list[str]) -> tuple[str, str] | None:
    """`--data-dir D --kube-cluster K` (in either order, `--x=v` allowed) or None for anything else."""
    values: dict[str, str] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("--") and "=" in arg:
            name, value = arg.split("=", 1)
            i += 1
        elif i + 1 < len(args):
            name, value = arg, args[i + 1]
            i += 2
        else:
            return None
        if name not in ("--data-dir", "--kube-cluster") or name in values:
            return None
        values[name] = value
    data_dir, cluster = values.get("--data-dir"), values.get("--kube-cluster")
    if not data_dir or not cluster or not os.path.isabs(data_dir):
        return None
    return data_dir, cluster


def fast_credentials(args: list[str]) -> bytes | None:
    """The ExecCredential for a cache hit, or None when the careful path must decide."""
    parsed = _fast_args(args)
    if parsed is None:
        return None
    version = execcred.fast_version(os.environ.get(execcred.ENV))
    if version is None:
        return None
    entry = cache.read_fast(*parsed)
    if entry is None or not entry.fresh(time.time()):
        return None
    return execcred.render(version, entry.status)


def main() -> int:
    """Run `kubectl-teleport`."""
    argv = sys.argv[1:]
    if argv and argv[0] == "credentials":
        out = fast_credentials(argv[1:])
        if out is not None:
            execcred.write_stdout(out)
            return 0
    if sys.flags.no_site:  # the fast launcher starts with -S; everything else wants site-packages and .pth files
        import site

        site.main()
    from .cli import main as cli_main

    return cli_main(argv)
