"""How `kubectl-teleport` starts: a cache hit through each install and each launcher candidate, against the
interpreter's own start in the same venv.

    .dev/venv/bin/python -m bench.launchers [--rounds N]      (from the repository root; ~30 s)

Builds the wheel of this checkout, installs it with pip into a fresh venv and with pipx (when `python -m pipx`
or `pipx` runs) into a temporary PIPX_HOME, starts a devcluster and logs in through each install, then times
each command with bench/spawner.py, interleaved (every round runs each command once, in its own random order,
after warm-up rounds):

- per install: `<venv>/bin/python -I -c pass` (the baseline), the kubeconfig's exec command (the launcher the
  wheel ships), and for pipx the ~/.local/bin link too;
- in the pip venv, the launcher as install.sh leaves it (its `#!` line pointed at the venv's python), and the
  candidates that were not chosen (docs/design.md "Launcher"): pip's console-script
  wrapper; `#!<python> -IS` (install.sh's launcher until the wheel carried one); `#!<python>`, which is what pip
  makes of a `#!python -IS` data script; the sh launcher without its `_exit` after a hit, finding the hot path by
  the usual search of sys.path, and run by bash (/bin/sh on Fedora and macOS).

Every output must be the same valid ExecCredential; exits 1 when one is not (timings are only reported).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from bench.measure import Cmd, Spawner, median, pair_ratio_median, walls
from harness.devcluster import start_devcluster
from kubectl_teleport import launcher

REPO = Path(__file__).resolve().parent.parent
KUBE_CLUSTER = "example-k8s-cluster"
EXEC_INFO = ('{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1",'
             '"spec":{"interactive":false}}\n')  # as kubectl 1.37.1 sets it (docs/benchmarks.md)
PIP_WRAPPER = """# -*- coding: utf-8 -*-
import re
import sys
from kubectl_teleport.entry import main
if __name__ == '__main__':
    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])
    sys.exit(main())
"""


def sh(argv: list, **kw) -> subprocess.CompletedProcess:
    out = subprocess.run([str(a) for a in argv], capture_output=True, text=True, check=False, **kw)
    if out.returncode != 0:
        sys.exit(f"bench: {' '.join(map(str, argv[:4]))} ... failed: {(out.stderr or out.stdout).strip()[-800:]}")
    return out


def build_wheel(tmp: Path) -> Path:
    src = tmp / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".git", ".dev", "build", "dist", "*.egg-info",
                                                              "__pycache__", ".*_cache"))
    hook = "import sys, setuptools.build_meta as b; print(b.build_wheel(sys.argv[1]))"
    return tmp / "dist" / sh([sys.executable, "-c", hook, tmp / "dist"], cwd=src).stdout.split()[-1]


def user_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON") and k != "VIRTUAL_ENV"}
    return {**env, **extra}


def pip_venv(tmp: Path, wheel: Path) -> Path:
    venv = tmp / "pip-venv"
    sh([sys.executable, "-m", "venv", venv], env=user_env())
    sh([venv / "bin" / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check", wheel], env=user_env())
    return venv


def pipx_venv(tmp: Path, wheel: Path) -> tuple[Path, Path] | None:
    """(venv, ~/.local/bin link) of a pipx install, or None without pipx."""
    ok = subprocess.run([sys.executable, "-m", "pipx", "--version"], capture_output=True, check=False)
    pipx = [sys.executable, "-m", "pipx"] if ok.returncode == 0 else ([shutil.which("pipx")] if shutil.which("pipx")
                                                                       else None)
    if pipx is None:
        return None
    env = user_env(PIPX_HOME=str(tmp / "pipx"), PIPX_BIN_DIR=str(tmp / "local-bin"),
                   PIPX_MAN_DIR=str(tmp / "local-man"), USE_EMOJI="0")
    sh([*pipx, "install", "--python", sys._base_executable, wheel], env=env)
    return tmp / "pipx" / "venvs" / "kubectl-teleport", tmp / "local-bin" / "kubectl-teleport"


def login(command: Path, dc, data: Path) -> dict:
    """Log in through `command` at the devcluster's Teleport proxy; the kubeconfig's exec stanza."""
    bot = dc.add_bot()
    sh([command, "login", "--proxy", bot["teleport_proxy"], "--token", bot["token"], "--ca-pin", bot["ca_pins"][0],
        *(f"--role={role}" for role in bot["roles"]), "--kube-cluster", KUBE_CLUSTER, "--data-dir", data],
       env=user_env(SSL_CERT_FILE=dc.web_ca_file))  # the devcluster's web certificate, as its `bots add` says
    return yaml.safe_load((data / "kubeconfig.yaml").read_text())["users"][0]["user"]["exec"]


def candidates(venv: Path, args: list[str], env: dict[str, str]) -> dict[str, Cmd]:
    """The launchers that were not chosen, written into the pip venv's bin/ (removed with it)."""
    bin_dir, python = venv / "bin", str(venv / "bin" / "python")
    purelib = sh([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    body = (REPO / "scripts" / "kubectl-teleport").read_text()

    def variant(old: str, new: str) -> str:
        if old not in body:
            sys.exit(f"bench: scripts/kubectl-teleport has no {old!r} any more; update bench/launchers.py")
        return body.replace(old, new, 1)

    texts = {
        "the launcher as install.sh leaves it (#!<python> -IS)": f"#!{python} -IS\n" + body.split("\n", 1)[1],
        "pip's console-script wrapper": f"#!{python}\n{PIP_WRAPPER}",
        "#!<python> -IS (install.sh's launcher before)": (
            f"#!{python} -IS\nimport sys\nsys.path.append({purelib!r})\n"
            "from kubectl_teleport.entry import main\nsys.exit(main())\n"),
        "#!<python>: pip's rewrite of #!python -IS": f"#!{python}\n" + body.split("\n", 1)[1],
        "sh launcher, without the _exit after a hit": variant("if code == 0 and getattr(", "if False and getattr("),
        "sh launcher, hot path found by sys.path search": variant('    q = f"{p}/kubectl_teleport"\n',
                                                                   "    raise LookupError\n"),
        "sh launcher run by bash": variant("#!/bin/sh", "#!/bin/bash"),
    }
    cmds = {}
    for i, (name, text) in enumerate(texts.items()):
        path = bin_dir / f"kt-candidate-{i}"
        path.write_text(text)
        path.chmod(0o755)
        cmds[name] = Cmd([str(path), *args], env)
    return cmds


def shuffled_rounds(spawner: Spawner, cmds: dict[str, Cmd], rounds: int, warmup: int) -> dict[str, list]:
    """`rounds` rounds after `warmup` untimed ones, each running every command once in its own random order (a
    fixed order lets a command's place in the round bias it by a few per cent on this machine)."""
    rng = random.Random(1)
    orders = [rng.sample(list(cmds), len(cmds)) for _ in range(warmup + rounds)]
    runs = iter(spawner.seq([cmds[name] for order in orders for name in order]))
    timed: dict[str, list] = {name: [] for name in cmds}
    for i, order in enumerate(orders):
        for name in order:
            run = next(runs)
            if i >= warmup:
                timed[name].append(run)
    return timed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--rounds", type=int, default=100, help="timed rounds (default 100, after 5 warm-up rounds)")
    opts = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="kt-bench-launchers-"))
    failures: list[str] = []
    try:
        print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
        wheel = build_wheel(tmp)
        pip = pip_venv(tmp, wheel)
        pipx = pipx_venv(tmp, wheel)
        dc = start_devcluster(tmp / "devcluster")
        try:
            groups: list[tuple[str, Path, dict[str, Cmd]]] = []
            installs = [("pip", pip, pip / "bin" / "kubectl-teleport")]
            if pipx:
                installs.append(("pipx", pipx[0], pipx[1]))
            for how, venv, command in installs:
                exec_ = login(command, dc, tmp / f"data-{how}")
                if exec_["command"] != str(venv / "bin" / "kubectl-teleport"):
                    failures.append(f"{how}: the kubeconfig runs {exec_['command']}, not the venv's launcher")
                env = user_env(KUBERNETES_EXEC_INFO=EXEC_INFO)
                python = str(venv / "bin" / "python")
                cmds = {"baseline: python -I -c pass": Cmd([python, "-I", "-c", "pass"], env),
                        "floor: python -I -S -c pass": Cmd([python, "-I", "-S", "-c", "pass"], env),
                        "the launcher (kubeconfig's exec command)": Cmd([exec_["command"], *exec_["args"]], env)}
                if how == "pipx":
                    cmds["the launcher through pipx's ~/.local/bin link"] = Cmd([str(command), *exec_["args"]], env)
                else:
                    cmds.update(candidates(venv, exec_["args"], env))
                runs_with = launcher.interpreter(exec_["command"]) or [""]
                if Path(runs_with[0]).parent != venv / "bin" or runs_with[1:] != ["-IS"]:
                    failures.append(f"{how}: the launcher would not run the venv's interpreter with -I -S")
                groups.append((how, venv, cmds))
        finally:
            dc.stop()
        spawner = Spawner(sys.executable, tmp)
        for how, _venv, cmds in groups:
            runs = shuffled_rounds(spawner, cmds, opts.rounds, 5)
            outputs = set()
            for name, rs in runs.items():
                bad = [r for r in rs if not r.ok]
                if bad:
                    failures.append(f"{how}, {name}: {len(bad)} runs failed, e.g. {bad[0].describe()}")
                if "credentials" in cmds[name].argv:
                    outputs |= {r.stdout for r in rs}
            if len(outputs) != 1 or json.loads(outputs.pop()).get("kind") != "ExecCredential":
                failures.append(f"{how}: the hits did not all print the same ExecCredential")
            base = runs["baseline: python -I -c pass"]
            print(f"\n{how} install ({opts.rounds} rounds; ratio of medians, median of per-round ratios)")
            for name, rs in runs.items():
                m = median(walls(rs))
                print(f"  {name:50s} {m * 1000:6.2f} ms  {m / median(walls(base)):.2f}x  "
                      f"{pair_ratio_median(rs, base):.2f}x")
        print(f"\nload average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
