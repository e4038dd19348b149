"""Which `kubectl-teleport start` processes run, and for which data dir (Linux `/proc`; `doctor`'s daemon check).

A process is ours when its command line runs the CLI: the launcher or pip's wrapper (`.../kubectl-teleport ARGS`,
directly or as `python [-IS] .../kubectl-teleport ARGS`, `sh .../kubectl-teleport ARGS`) or the package
(`python [OPTIONS] -m kubectl_teleport ARGS`). ARGS are parsed by the CLI's own parser, so a flag spelled as
argparse accepts it (`--data-dir=X`, `--data X`) counts, and `login --role start` is no `start`.

Its data dir is resolved as `store.datadir.resolve` resolved it in that process: `--data-dir` (relative to the
process's working directory, `~` from its `HOME`), else `$KUBECTL_TELEPORT_DATA_DIR` from its environment, else the
one identity under its user data dir (`$XDG_DATA_HOME` or `$HOME/.local/share`, then `kubectl-teleport/`).
`/proc/PID/environ` and `cwd` are readable only for our own processes (or as root): without them the data dir of
a `start` that relied on them is unknown, and said so.
"""

from __future__ import annotations

import contextlib
import io
import os
import pwd
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

ENV_DATA_DIR = "KUBECTL_TELEPORT_DATA_DIR"  # store.datadir.ENV_DATA_DIR (not imported: no platformdirs here)
APP = "kubectl-teleport"
MODULE = "kubectl_teleport"
# python options that take the next word as their value (the others are flags, possibly combined: -IS)
_PY_VALUE_OPTS = {"-X", "-W", "--check-hash-based-pycs"}
_INTERPRETERS = ("python", "pypy", "sh", "bash", "dash")


@dataclass(frozen=True)
class StartProcess:
    """A running `kubectl-teleport start`: its pid and data dir, or why the data dir is unknown."""

    pid: int
    data_dir: Path | None
    unknown: str = ""  # why data_dir is None


def cli_args(argv: Sequence[str]) -> list[str] | None:
    """The CLI's arguments when `argv` runs kubectl-teleport (launcher, wrapper or `-m`), else None."""
    if not argv:
        return None
    if os.path.basename(argv[0]) == APP:
        return list(argv[1:])
    if not os.path.basename(argv[0]).startswith(_INTERPRETERS):
        return None
    i = 1
    while i < len(argv):  # an interpreter (python, sh) and its options, then the script or -m module
        word = argv[i]
        if word == "-m" or (word.startswith("-m") and not word.startswith("--")):
            module = word[2:] or (argv[i + 1] if i + 1 < len(argv) else "")
            return list(argv[i + (1 if word[2:] else 2):]) if module == MODULE else None
        if word.startswith("-c"):
            return None  # python -c / sh -c: a program given inline
        if word in _PY_VALUE_OPTS:
            i += 2
            continue
        if word.startswith("-"):
            i += 1
            continue
        script = word.replace(os.sep, "/")
        if os.path.basename(word) == APP or script.endswith(f"/{MODULE}/__main__.py"):
            return list(argv[i + 1:])
        return None
    return None


def start_data_dir_arg(args: Sequence[str]) -> tuple[bool, str | None]:
    """(is `start`, its --data-dir) of the CLI arguments, parsed by the CLI's parser (nothing printed)."""
    from . import cli
    from .errors import PluginError

    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            parsed = cli.build_parser().parse_args(list(args))
    except (PluginError, SystemExit):
        return False, None  # a usage error or --help: that process has exited, or is about to
    if parsed.command != "start":
        return False, None
    return True, parsed.data_dir


def user_data_base(env: Mapping[str, str], home: str) -> Path:
    """platformdirs' user data dir of the app on Linux, for another process's environment."""
    xdg = env.get("XDG_DATA_HOME", "").strip()
    return Path(xdg if xdg else os.path.join(home, ".local", "share")) / APP


def resolve_data_dir(data_dir: str | None, env: Mapping[str, str] | None, cwd: str | None,
                     home: str | None) -> tuple[Path | None, str]:
    """The data dir a `start` with this --data-dir, environment, working directory and home resolved, or
    (None, why not) when what it depends on is unreadable or ambiguous."""
    if not data_dir:
        if env is None:
            return None, "started without --data-dir, and its environment is not readable by this user"
        data_dir = env.get(ENV_DATA_DIR) or None
    if data_dir:
        if data_dir == "~" or data_dir.startswith("~/"):
            if home is None:
                return None, f"its --data-dir {data_dir} depends on a home that is not readable by this user"
            data_dir = home + data_dir[1:]
        elif data_dir.startswith("~"):
            data_dir = os.path.expanduser(data_dir)  # ~user: the password database, whoever asks
        if not os.path.isabs(data_dir):
            if cwd is None:
                return None, f"its --data-dir {data_dir} is relative to a working directory not readable here"
            data_dir = os.path.join(cwd, data_dir)
        return Path(os.path.normpath(data_dir)), ""
    assert env is not None
    home = env.get("HOME") or home
    if home is None:
        return None, "its home directory is unknown"
    base = user_data_base(env, home)
    if not os.path.isabs(base) and cwd is not None:
        base = Path(cwd) / base
    found = sorted(base.glob("*/config.json")) if base.is_dir() else []
    if len(found) != 1:
        return None, f"started without --data-dir, and {base} holds {len(found)} identities now"
    return found[0].parent, ""


def _read_env(path: Path) -> dict[str, str] | None:
    try:
        raw = path.read_bytes()
    except OSError:
        return None
    env = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            env[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
    return env


def _home_of(uid: int) -> str | None:
    try:
        return pwd.getpwuid(uid).pw_dir
    except KeyError:
        return None


def start_processes(proc: Path = Path("/proc")) -> list[StartProcess]:
    """Every running `kubectl-teleport start` under `proc` with the data dir it uses (or why unknown)."""
    found = []
    try:
        pids = sorted(int(n) for n in os.listdir(proc) if n.isdigit())
    except OSError:
        return []
    for pid in pids:
        base = proc / str(pid)
        try:
            raw = (base / "cmdline").read_bytes()
            uid = os.stat(base).st_uid
        except OSError:
            continue
        argv = [a.decode("utf-8", "surrogateescape") for a in raw.split(b"\0")]
        if argv and argv[-1] == "":
            argv.pop()
        args = cli_args(argv)
        if args is None:
            continue
        is_start, data_dir = start_data_dir_arg(args)
        if not is_start:
            continue
        env = _read_env(base / "environ")
        try:
            cwd: str | None = os.readlink(base / "cwd")
        except OSError:
            cwd = None
        home = (env or {}).get("HOME") or _home_of(uid)
        resolved, why = resolve_data_dir(data_dir, env, cwd, home)
        found.append(StartProcess(pid, resolved, why))
    return found
