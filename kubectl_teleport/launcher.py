"""The fast launcher install.sh puts in place of pip's `kubectl-teleport` console script.

pip's wrapper imports `re` and starts the interpreter without flags. Ours runs the venv interpreter with
`-I -S` (isolated, no `site` at start-up) and puts the venv's site-packages on `sys.path` itself, so a cache hit
costs about as much as starting the interpreter. Paths that need third-party libraries call `site.main()`
first (sitepath.py), so `.pth` files and everything else `site` does still apply there.

Usage: python -m kubectl_teleport.launcher TARGET   (writes TARGET atomically, mode 0755)
"""

from __future__ import annotations

import os
import sys
import sysconfig

MAX_SHEBANG = 127  # older kernels cut the #! line at 128 bytes


def render(python: str, site_packages: str) -> str:
    """The launcher's text for an absolute interpreter and site-packages path."""
    return (f"#!{python} -IS\n"
            "# kubectl-teleport fast launcher (written by install.sh; see kubectl_teleport/launcher.py)\n"
            "import sys\n"
            f"sys.path.append({site_packages!r})\n"
            "from kubectl_teleport.entry import main\n"
            "sys.exit(main())\n")


def write(target: str) -> bool:
    """Replace `target` with the launcher; False (nothing written) when the #! line would be too long."""
    python = os.path.abspath(sys.executable)
    if len(python) + 5 > MAX_SHEBANG:
        return False
    tmp = f"{target}.tmp{os.getpid()}"
    with open(tmp, "w") as fh:
        fh.write(render(python, sysconfig.get_paths()["purelib"]))
    os.chmod(tmp, 0o755)  # noqa: S103 (an executable every user may run, like any console script)
    os.replace(tmp, target)
    return True


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m kubectl_teleport.launcher TARGET")
    sys.exit(0 if write(sys.argv[1]) else 1)
