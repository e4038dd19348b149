"""Console-script entry point. A cache hit of `credentials` (`--data-dir D --kube-cluster K`, or a tbot
destination: `--tbot-dir DIR --cache-dir CDIR`) is answered here with built-in modules only (`posix`, `sys`,
`time`: not even `os`); a miss while another process renews waits for its certificate almost as lightly
(`waiter`); everything else is handed to the careful path or the full CLI.
Every path runs inside the same error guard: one line on stderr, a documented exit code, no traceback."""

import posix
import sys
import time

from . import cache, execcred


def _flags(args: list[str], names: tuple[str, ...]) -> dict[str, str] | None:
    """`--name value` / `--name=value` pairs, each of `names` at most once; None for anything else."""
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
        if name not in names or name in values:
            return None
        values[name] = value
    return values


def _fast_args(args: list[str]) -> tuple[str, str] | None:
    """`--data-dir D --kube-cluster K` (in either order, `--x=v` allowed) or None for anything else."""
    values = _flags(args, ("--data-dir", "--kube-cluster"))
    if values is None:
        return None
    data_dir, cluster = values.get("--data-dir"), values.get("--kube-cluster")
    if not data_dir or not cluster or not data_dir.startswith("/"):
        return None
    return data_dir, cluster


def _tbot_args(args: list[str]) -> tuple[str, str | None] | None:
    """`--tbot-dir DIR [--cache-dir CDIR]`, both absolute, or None for anything else (the full CLI)."""
    values = _flags(args, ("--tbot-dir", "--cache-dir"))
    if values is None:
        return None
    tbot_dir, cache_dir = values.get("--tbot-dir"), values.get("--cache-dir")
    if not tbot_dir or not tbot_dir.startswith("/") or (cache_dir is not None and not cache_dir.startswith("/")):
        return None
    return tbot_dir, cache_dir


served = False  # the answer came from a cache, with only light modules loaded: the launcher may `_exit`


def _version() -> str | None:
    """The ExecCredential version kubectl asked for, when KUBERNETES_EXEC_INFO is simple enough to read here."""
    raw = posix.environ.get(execcred.ENV_BYTES)
    return execcred.fast_version(None if raw is None else raw.decode("utf-8", "replace"))


def fast_credentials(data_dir: str, cluster: str) -> bytes | None:
    """The ExecCredential for a cache hit, or None when the careful path must decide."""
    version = _version()
    if version is None:
        return None
    entry = cache.read_fast(data_dir, cluster)
    if entry is None or not entry.fresh(time.time()):
        return None
    return execcred.render(version, entry.status)


def fast_tbot_credentials(tbot_dir: str, cache_dir: str) -> bytes | None:
    """The ExecCredential for a tbot destination whose files are unchanged since its entry was made, or None."""
    version = _version()
    if version is None:
        return None
    entry = cache.read_tbot_fast(tbot_dir, cache_dir)
    if entry is None or not entry.fresh(time.time()):
        return None
    return execcred.render(version, entry.status)


def _serve(out: bytes) -> int:
    """Print a cached answer (a hit, or the certificate another process just renewed)."""
    global served
    execcred.write_stdout(out)
    served = True
    return 0


def _careful_tbot(tbot_dir: str, cache_dir: str | None) -> int:
    """A tbot destination that is not a hit: rebuild its entry (cryptography only in the process that does)."""
    from .commands import tbot_credentials

    execcred.write_stdout(tbot_credentials.credentials(tbot_dir, cache_dir))
    return 0


def _careful(data_dir: str, cluster: str) -> int:
    """Not a cache hit: wait for another process's renewal as lightly as a hit (`waiter`), or take the careful
    path (no argparse; heavy libraries only for the one renewer)."""
    version = _version()
    if version is not None:
        from . import waiter

        out, held, wait = waiter.wait(data_dir, cluster, version)
        if out is not None:
            return _serve(out)
    else:
        held, wait = None, None
    from .commands import credentials

    kw = {} if wait is None else {"wait": wait}
    execcred.write_stdout(credentials.credentials(data_dir, cluster, held=held, **kw))
    return 0


def _run(argv: list[str]) -> int:
    if argv and argv[0] == "credentials":
        parsed = _fast_args(argv[1:])
        if parsed is not None:
            out = fast_credentials(*parsed)
            return _careful(*parsed) if out is None else _serve(out)
        tbot = _tbot_args(argv[1:])
        if tbot is not None:
            if tbot[1] is not None:
                out = fast_tbot_credentials(tbot[0], tbot[1])
                if out is not None:
                    return _serve(out)
            return _careful_tbot(*tbot)
    from . import sitepath

    sitepath.ensure()  # the fast launcher starts with -S; the full CLI wants site-packages and .pth files
    from .cli import main as cli_main

    return cli_main(argv)


def main() -> int:
    """Run `kubectl-teleport`."""
    try:
        return _run(sys.argv[1:])
    except BaseException as err:  # the one guard; SystemExit (argparse's --help) passes through
        if isinstance(err, SystemExit):
            raise
        from .errors import report

        return report(err)
