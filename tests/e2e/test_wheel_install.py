"""The sdist and wheel, built from a copy of this checkout and installed as Python users do: with pip into a fresh
venv, and with pipx (its ~/.local/bin link); then `--version`, a login against a devcluster, the kubeconfig's
exec command (the install's own fast launcher), and a cache hit through it that imports only the hot path.

Dependencies come from a wheelhouse cached outside the repo (`${XDG_CACHE_HOME:-~/.cache}/kubectl-teleport-tests/
wheels`), filled once by `pip wheel` and refilled only when an offline install from it fails, so reruns need no
network. The builds and installs are made once per module.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from filelock import FileLock

from kubectl_teleport import launcher
from tests.e2e.test_install import copy_checkout
from tests.plugin_helpers import EXEC_INFO_V1, HOT_PATH, KUBE_CLUSTER, hit_imports, join_args, python_of, web_trust

REPO = Path(__file__).resolve().parents[2]
VERSION = re.search(r'^__version__ = "([^"]+)"', (REPO / "kubectl_teleport" / "__init__.py").read_text(), re.M)[1]
PY = f"python{sys.version_info[0]}.{sys.version_info[1]}"
INSTALLERS = ("pip", "pipx")


def clean_env(**extra: str) -> dict[str, str]:
    """The environment a user's shell would give: none of this test venv's Python variables."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    return {**env, **extra}


def run(argv: list, *, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    out = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout, check=False, **kw)
    assert out.returncode == 0, f"{argv}: {out.stdout}{out.stderr}"
    return out


# ---- build -------------------------------------------------------------------------------------------------

HOOK = "import sys, setuptools.build_meta as b; print(getattr(b, sys.argv[1])(sys.argv[2]))"


@dataclass
class Dists:
    sdist: Path
    wheel: Path


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Dists:
    """The sdist from a copy of the checkout, then the wheel from the unpacked sdist (as `python -m build` does,
    so a file missing from the sdist fails here); setuptools' PEP 517 hooks, run by this venv (no isolation)."""
    root = tmp_path_factory.mktemp("dists")
    src, out = copy_checkout(root / "src"), root / "dist"
    sdist = out / run([sys.executable, "-c", HOOK, "build_sdist", out], cwd=src).stdout.split()[-1]
    with tarfile.open(sdist) as tar:
        tar.extractall(root / "unpacked", **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    unpacked = root / "unpacked" / sdist.name.removesuffix(".tar.gz")
    wheel = out / run([sys.executable, "-c", HOOK, "build_wheel", out], cwd=unpacked).stdout.split()[-1]
    return Dists(sdist, wheel)


def test_the_wheel_carries_the_launcher_as_a_data_script(dists: Dists) -> None:
    with tarfile.open(dists.sdist) as tar:
        names = tar.getnames()
    assert f"kubectl_teleport-{VERSION}/scripts/kubectl-teleport" in names
    with zipfile.ZipFile(dists.wheel) as whl:
        script = whl.getinfo(f"kubectl_teleport-{VERSION}.data/scripts/kubectl-teleport")
        assert whl.read(script) == (REPO / "scripts" / "kubectl-teleport").read_bytes()
        assert (script.external_attr >> 16) & 0o111 == 0o111
        entry_points = whl.read(f"kubectl_teleport-{VERSION}.dist-info/entry_points.txt").decode()
    assert "kubectl-teleport-devcluster =" in entry_points
    assert "kubectl-teleport =" not in entry_points  # no console script in its place
    assert dists.wheel.name.endswith("-py3-none-any.whl")


# ---- install -----------------------------------------------------------------------------------------------

def wheelhouse() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    path = Path(base) / "kubectl-teleport-tests" / "wheels"
    path.mkdir(parents=True, exist_ok=True)
    return path


def fill_wheelhouse(house: Path, wheel: Path) -> None:
    """Wheels of every dependency, and of pip (pipx upgrades its shared pip from here), from the index."""
    run([sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check", "-w", house, wheel, "pip"])
    for ours in house.glob("kubectl_teleport-*"):
        ours.unlink()


def offline_then_filled(install, wheel: Path) -> None:
    """`install(pip_args)` from the wheelhouse alone; once more after filling it if that fails."""
    house = wheelhouse()
    offline = ["--no-index", "--find-links", str(house)]
    with FileLock(str(house) + ".lock"):
        if install(offline).returncode != 0:
            fill_wheelhouse(house, wheel)
            again = install(offline)
            assert again.returncode == 0, again.stdout + again.stderr


@dataclass
class Installed:
    how: str
    command: Path  # what a user runs: the venv's script (pip), the ~/.local/bin link (pipx)
    launcher: Path  # the script in the venv
    venv: Path


def pip_install(root: Path, wheel: Path) -> Installed:
    venv = root / "venv"
    run([sys.executable, "-m", "venv", venv], env=clean_env())
    pip = [venv / "bin" / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    offline_then_filled(lambda args: subprocess.run([str(a) for a in [*pip, *args, wheel]], capture_output=True,
                                                    text=True, env=clean_env(), timeout=300, check=False), wheel)
    return Installed("pip", venv / "bin" / "kubectl-teleport", venv / "bin" / "kubectl-teleport", venv)


def pipx_command() -> list[str] | None:
    if subprocess.run([sys.executable, "-m", "pipx", "--version"], capture_output=True, check=False).returncode == 0:
        return [sys.executable, "-m", "pipx"]
    found = shutil.which("pipx")
    return [found] if found else None


def pipx_install(root: Path, wheel: Path) -> Installed:
    pipx = pipx_command()
    if pipx is None:
        pytest.skip("pipx is not installed (pip install pipx, or the test extra)")
    home, bin_dir = root / "pipx", root / "local" / "bin"
    env = clean_env(PIPX_HOME=str(home), PIPX_BIN_DIR=str(bin_dir), PIPX_MAN_DIR=str(root / "local" / "man"),
                    USE_EMOJI="0")
    offline_then_filled(lambda args: subprocess.run(
        [*pipx, "install", "--python", sys._base_executable, f"--pip-args={' '.join(args)}", str(wheel)],
        capture_output=True, text=True, env=env, timeout=300, check=False), wheel)
    venv = home / "venvs" / "kubectl-teleport"
    return Installed("pipx", bin_dir / "kubectl-teleport", venv / "bin" / "kubectl-teleport", venv)


@pytest.fixture(scope="module")
def installs(dists: Dists, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Installed | str]:
    """Each installer's install of the wheel (or why there is none), made once for the module."""
    made: dict[str, Installed | str] = {}
    for how, install in (("pip", pip_install), ("pipx", pipx_install)):
        try:
            made[how] = install(tmp_path_factory.mktemp(how), dists.wheel)
        except pytest.skip.Exception as skipped:
            made[how] = str(skipped)
    return made


@pytest.fixture(params=INSTALLERS)
def installed(request: pytest.FixtureRequest, installs: dict[str, Installed | str]) -> Installed:
    got = installs[request.param]
    if isinstance(got, str):
        pytest.skip(got)
    return got


def test_installs_the_launcher_and_answers_version(installed: Installed) -> None:
    if installed.how == "pipx":
        assert installed.command.is_symlink()
        assert launcher.resolve(str(installed.command)) == str(installed.launcher)
    assert launcher.is_launcher(str(installed.launcher))
    assert installed.launcher.read_bytes() == (REPO / "scripts" / "kubectl-teleport").read_bytes()
    assert python_of(str(installed.command)) == [str(installed.venv / "bin" / "python"), "-IS"]
    out = run([installed.command, "--version"], env=clean_env(), cwd=installed.venv.parent)
    assert out.stdout.strip() == f"kubectl-teleport {VERSION}"


def test_login_writes_the_install_s_launcher_and_a_hit_runs_only_the_hot_path(
        installed: Installed, devcluster, tmp_path: Path) -> None:
    bot = devcluster.add_bot()
    data = tmp_path / "bot"
    env = clean_env(PATH=f"{installed.command.parent}{os.pathsep}{os.environ['PATH']}", **web_trust(devcluster))
    run(["kubectl-teleport", "login", *join_args(bot), "--kube-cluster", KUBE_CLUSTER, "--data-dir", data], env=env,
        cwd=tmp_path)
    exec_ = yaml.safe_load((data / "kubeconfig.yaml").read_text())["users"][0]["user"]["exec"]
    assert exec_["command"] == str(installed.launcher)  # absolute, in the venv: not the link, not a shim
    assert exec_["args"] == ["credentials", "--data-dir", str(data), "--kube-cluster", KUBE_CLUSTER]

    hit_env = clean_env(KUBERNETES_EXEC_INFO=EXEC_INFO_V1 + "\n")
    hit = run([exec_["command"], *exec_["args"]], env=hit_env, cwd=tmp_path)
    cred = json.loads(hit.stdout)
    assert cred["kind"] == "ExecCredential" and cred["status"]["clientCertificateData"].startswith("-----BEGIN")
    assert hit.stderr == ""
    traced, mods = hit_imports(exec_, hit_env)
    assert traced.returncode == 0 and traced.stdout == hit.stdout  # byte-identical, from the cache
    assert mods == HOT_PATH
    assert devcluster.stats()["kube_certs_issued"] == 1
