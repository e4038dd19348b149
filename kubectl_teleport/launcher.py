"""The `kubectl-teleport` launcher, and how to tell which interpreter a launcher runs.

kubectl runs `kubectl-teleport credentials` on every call, so its start-up is the plugin's cost. pip's
console-script wrapper starts the interpreter with `site` and imports `re` (1.6x a bare start), and pip's wheel
installer rewrites a data script's `#!python -IS` to `#!<venv python>` without the flags. So the wheel ships
`scripts/kubectl-teleport` as a data script that installers copy as it is: a POSIX sh script that is a Python
program too. Its sh lines `exec` the interpreter of the install with `-IS` on the same file: in a venv (pip, pipx)
the venv's `python` beside the script at once; otherwise, after following a symlinked `$0` (pipx links its apps
into ~/.local/bin), the `python3.X` whose site-packages holds the package. install.sh, which knows the
interpreter, points the `#!` line at the venv's `python -IS` instead, so the kernel starts Python directly. The
Python lines load the hot path's modules from the interpreter's site-packages by the standard loader (no search
of sys.path), run `entry.main`, and after a cache hit leave with `_exit` (the answer went out in one `write`; the
interpreter's teardown costs ~1 ms). A hit costs ~0.86x (pip) to ~0.9x (pipx) of the venv's `python -I -c pass`,
~0.8x after install.sh (docs/design.md "Launcher"). Paths that need third-party libraries call `site.main()`
first (sitepath.py), so `.pth` files and everything else `site` does apply there.

This module mirrors the script's choice of interpreter for the code that must know it: `init` (can the bot and
reader users run it?), the hot-path import test and the bench (they run it under `-v`), `plugin_command`.
"""

from __future__ import annotations

import glob
import os
import shutil

MARKER = b"# kubectl-teleport launcher:"  # the script's third line starts with this
HOT_FLAGS = ("-IS",)  # -I -S
SH = b"#!/bin/sh"
MAX_SHEBANG = 127  # older kernels cut the #! line at 128 bytes


def _head(path: str) -> list[bytes]:
    try:
        with open(path, "rb") as fh:
            return fh.read(512).split(b"\n", 3)
    except OSError:
        return []


def is_launcher(path: str) -> bool:
    """True when `path` is (a link to) the launcher: as the wheel ships it (`#!/bin/sh`) or pointed at its
    interpreter by install.sh (`#!<venv python> -IS`)."""
    lines = _head(path)
    return len(lines) > 2 and lines[0].startswith(b"#!") and lines[1] == b"''':'" and lines[2].startswith(MARKER)


def point_at_interpreter(path: str, python: str) -> bool:
    """Make the launcher at `path` start `python -IS` itself (`#!<python> -IS`), sparing every call the sh hop;
    install.sh does this, as it knows the interpreter. Atomic; False (nothing changed) when `path` is no launcher
    or the #! line would be too long for the kernel."""
    shebang = f"#!{python} {HOT_FLAGS[0]}".encode()
    if not is_launcher(path) or len(shebang) > MAX_SHEBANG or b"\n" in shebang:
        return False
    with open(path, "rb") as fh:
        rest = fh.read().split(b"\n", 1)[1]
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as fh:
        fh.write(shebang + b"\n" + rest)
    os.chmod(tmp, 0o755)  # noqa: S103 (an executable every user may run, like any console script)
    os.replace(tmp, path)
    return True


def resolve(path: str) -> str:
    """`path` made absolute with its own symlinks followed, as the launcher does with `$0`, in its directory's
    canonical form (a relative link's `bin/../..` gone)."""
    path = os.path.abspath(path)
    for _ in range(40):
        if not os.path.islink(path):
            break
        target = os.readlink(path)
        path = target if target.startswith("/") else f"{os.path.dirname(path)}/{target}"
    return os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))


def interpreter(path: str) -> list[str] | None:
    """The command a `kubectl-teleport` at `path` starts Python with, before the script and its arguments:
    `[python, "-IS"]` for the launcher (the interpreter it would choose; `[python3.X]` for a --user install, which
    needs its site), the `#!` line's words for any other
    script (pip's console-script wrapper, an older `#!<python> -IS` launcher); None when neither applies."""
    if is_launcher(path) and _head(path)[0].strip() == SH:
        here = os.path.dirname(resolve(path))
        if os.path.isfile(f"{here}/../pyvenv.cfg"):
            return [f"{here}/python", *HOT_FLAGS]
        found = sorted(glob.glob(f"{glob.escape(here)}/../lib/python3.*/site-packages/kubectl_teleport"))
        for match in found:
            version = os.path.basename(match.split("/site-packages/")[0])
            beside = f"{here}/{version}"
            if os.path.isfile(beside) and os.access(beside, os.X_OK):
                return [beside, *HOT_FLAGS]
        on_path = found and shutil.which(os.path.basename(found[-1].split("/site-packages/")[0]))
        if on_path:
            return [on_path]  # pip install --user: with site (the user site)
        python3 = shutil.which("python3")
        return [python3] if python3 else None
    try:
        with open(path, "rb") as fh:
            first = fh.readline(512)
    except OSError:
        return None
    words = first[2:].decode("utf-8", "replace").split() if first.startswith(b"#!") else []
    return words or None


if __name__ == "__main__":  # install.sh: python -m kubectl_teleport.launcher <venv>/bin/kubectl-teleport
    import sys

    if len(sys.argv) != 2:
        sys.exit("usage: python -m kubectl_teleport.launcher LAUNCHER")
    sys.exit(0 if point_at_interpreter(sys.argv[1], os.path.abspath(sys.executable)) else 1)
