"""install.sh, run for real: into temporary prefixes, from a copy of this checkout, from another directory.

Two full installs in all (dependencies come from pip's cache): one shared by most tests, one that is
uninstalled. The failure cases stop before pip runs and cost next to nothing.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from kubectl_teleport import launcher

REPO = Path(__file__).resolve().parents[2]
COMMANDS = ("kubectl-teleport", "kubectl-teleport-devcluster")
PYTHON_39 = Path("/root/.pyenv/versions/3.9.18/bin/python3")
COPY_IGNORE = shutil.ignore_patterns(
    ".git", ".dev", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".ruff_cache"
)


def run_install(script: Path, *args: str, cwd: Path, path_prepend: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    if path_prepend is not None:
        env["PATH"] = f"{path_prepend}{os.pathsep}{env['PATH']}"
    return subprocess.run(
        [str(script), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=900,
        check=False,
    )


def copy_checkout(dest: Path) -> Path:
    shutil.copytree(REPO, dest, ignore=COPY_IGNORE, symlinks=True)
    return dest


def pyvenv_cfg(venv: Path) -> dict[str, str]:
    lines = (venv / "pyvenv.cfg").read_text().splitlines()
    return {k.strip(): v.strip() for k, _, v in (ln.partition("=") for ln in lines) if v}


def one_line(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert len(lines) == 1, text
    return lines[0]


@dataclass
class Install:
    src: Path
    prefix: Path
    first: subprocess.CompletedProcess


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Install:
    """A fresh install into P with the default python3 on PATH (a pyenv shim here), run from another cwd."""
    root = tmp_path_factory.mktemp("install").resolve()
    src = copy_checkout(root / "src")
    prefix = root / "prefix"
    first = run_install(src / "install.sh", "--prefix", str(prefix), cwd=root)
    assert first.returncode == 0, first.stdout + first.stderr
    return Install(src, prefix, first)


def test_fresh_install_links_both_commands_into_the_venv(installed: Install) -> None:
    venv_bin = installed.prefix / "venv" / "bin"
    for name in COMMANDS:
        link = installed.prefix / "bin" / name
        assert link.is_symlink()
        assert os.readlink(link) == str(venv_bin / name)
    # Both start the venv's own interpreter, never a python3 on PATH: the devcluster through pip's console script,
    # kubectl-teleport through the wheel's launcher, whose #! line install.sh points at <venv>/bin/python -IS.
    shebang = (venv_bin / "kubectl-teleport-devcluster").read_text().splitlines()[0]
    assert shebang.split()[0] == f"#!{venv_bin / 'python'}"
    assert (venv_bin / "kubectl-teleport").read_text().splitlines()[0] == f"#!{venv_bin / 'python'} -IS"
    assert launcher.is_launcher(str(venv_bin / "kubectl-teleport"))
    assert launcher.interpreter(str(venv_bin / "kubectl-teleport")) == [str(venv_bin / "python"), "-IS"]


def test_venv_is_made_from_the_real_interpreter_not_a_shim(installed: Install) -> None:
    venv = installed.prefix / "venv"
    home = Path(pyvenv_cfg(venv)["home"])
    assert "shims" not in home.parts
    real = (venv / "bin" / "python").resolve()
    assert real.parent == home
    assert not real.read_bytes()[:2] == b"#!", f"{real} is a script, not an interpreter"
    assert f"interpreter: {real} " in installed.first.stdout


def test_first_run_says_what_it_did_and_warns_about_path(installed: Install) -> None:
    out, err = installed.first.stdout, installed.first.stderr
    bin_dir = installed.prefix / "bin"
    assert f"venv:        {installed.prefix / 'venv'} (created)" in out
    for name in COMMANDS:
        assert f"{bin_dir / name} -> {installed.prefix / 'venv' / 'bin' / name}" in out
    assert f"{bin_dir} is not on PATH" in err
    assert f'export PATH="{bin_dir}:$PATH"' in err
    assert out.rstrip().endswith(f"next: {bin_dir / 'kubectl-teleport'} demo")
    assert not (installed.src / "build").exists(), "the build must not write into the checkout"


def _blocked_for_others(path: Path) -> str | None:
    """The first component of `path` other users cannot execute or search (what install.sh checks)."""
    here = Path("/")
    for part in path.parts[1:]:
        here = here / part
        if not here.stat().st_mode & 0o001:
            return str(here)
    return None


def test_warns_when_other_users_cannot_run_the_interpreter(installed: Install) -> None:
    real = (installed.prefix / "venv" / "bin" / "python").resolve()
    blocked = _blocked_for_others(real)
    warned = [ln for ln in installed.first.stderr.splitlines() if "other users cannot run" in ln]
    if blocked:  # e.g. a pyenv under a 0700 home: init's bot and reader users could not run the plugin
        assert len(warned) == 1 and f"({blocked} is not executable or searchable" in warned[0], warned
        assert "--python" in warned[0]
    else:
        assert warned == []


# The console scripts' target modules (pyproject [project.scripts]).
ENTRY_MODULES = {
    "kubectl-teleport": "kubectl_teleport/entry.py",
    "kubectl-teleport-devcluster": "kubectl_teleport/devcluster/cli.py",
}


@pytest.mark.parametrize(
    ("command", "arg"), [("kubectl-teleport", "--version"), ("kubectl-teleport-devcluster", "--help")]
)
def test_installed_commands_run(installed: Install, command: str, arg: str) -> None:
    """Both commands start through the links and answer.

    TODO(lead): the skip below exists only while the entry modules are being written (issues 2/3); once a
    module is in the checkout, this asserts strictly, so a packaging mistake (module not installed) fails.
    """
    if not (installed.src / ENTRY_MODULES[command]).exists():
        pytest.skip(f"{ENTRY_MODULES[command]} is not written yet")
    proc = subprocess.run(
        [str(installed.prefix / "bin" / command), arg],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=installed.prefix,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    if arg == "--version":
        init = (installed.src / "kubectl_teleport" / "__init__.py").read_text()
        version = re.search(r'^__version__ = "([^"]+)"', init, re.M)
        assert version and version.group(1) in proc.stdout
    else:
        assert "usage" in proc.stdout.lower()


def test_rerun_upgrades_in_place_without_recreating_the_venv(installed: Install) -> None:
    venv = installed.prefix / "venv"
    cfg_before = (venv / "pyvenv.cfg").stat()
    links_before = {n: os.readlink(installed.prefix / "bin" / n) for n in COMMANDS}
    # A code change at the same version number must land.
    init = installed.src / "kubectl_teleport" / "__init__.py"
    init.write_text(init.read_text() + '\n_INSTALL_PROBE = "rerun"\n')

    again = run_install(
        installed.src / "install.sh",
        "--prefix",
        str(installed.prefix),
        cwd=installed.prefix,
        path_prepend=installed.prefix / "bin",
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"venv:        {venv} (reused)" in again.stdout
    assert "creating venv" not in again.stdout
    assert "not on PATH" not in again.stderr
    assert again.stdout.rstrip().endswith("next: kubectl-teleport demo")
    cfg_after = (venv / "pyvenv.cfg").stat()
    assert (cfg_after.st_ino, cfg_after.st_mtime_ns) == (cfg_before.st_ino, cfg_before.st_mtime_ns)
    assert {n: os.readlink(installed.prefix / "bin" / n) for n in COMMANDS} == links_before
    code = "import kubectl_teleport as k; print(k._INSTALL_PROBE)"
    probe = subprocess.run(
        [str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True, cwd=installed.prefix, check=False
    )
    assert probe.stdout.strip() == "rerun", probe.stderr


def test_uninstall_removes_exactly_what_install_made(tmp_path: Path) -> None:
    prefix, links = tmp_path / "p", tmp_path / "links"
    src = copy_checkout(tmp_path / "src")
    made = run_install(src / "install.sh", "--prefix", str(prefix), "--bin-dir", str(links), "--quiet", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert made.stdout == ""  # --quiet: warnings only (the PATH one goes to stderr)
    assert not (prefix / "bin").exists()  # --bin-dir overrides --prefix's DIR/bin
    assert sorted(p.name for p in links.iterdir()) == sorted(COMMANDS)

    (links / "someone-elses-tool").write_text("keep me")
    (links / "kubectl-teleport-devcluster").unlink()
    (links / "kubectl-teleport-devcluster").symlink_to("/bin/true")  # not ours any more

    gone = run_install(
        src / "install.sh", "--uninstall", "--prefix", str(prefix), "--bin-dir", str(links), cwd=tmp_path
    )
    assert gone.returncode == 0, gone.stderr
    assert not (prefix / "venv").exists()
    assert not (links / "kubectl-teleport").is_symlink()
    assert os.readlink(links / "kubectl-teleport-devcluster") == "/bin/true"
    assert (links / "someone-elses-tool").read_text() == "keep me"
    assert "left" in gone.stderr and "kubectl-teleport-devcluster" in gone.stderr

    again = run_install(
        src / "install.sh", "--uninstall", "--prefix", str(prefix), "--bin-dir", str(links), cwd=tmp_path
    )
    assert again.returncode == 0 and "nothing to remove" in again.stdout


# ---- failures: one line on stderr, non-zero exit, nothing made ------------------------------------------


@pytest.mark.skipif(not PYTHON_39.exists(), reason=f"{PYTHON_39} is not installed")
def test_python_older_than_3_10_fails_with_one_line(tmp_path: Path) -> None:
    proc = run_install(REPO / "install.sh", "--prefix", str(tmp_path / "p"), "--python", str(PYTHON_39), cwd=tmp_path)
    assert proc.returncode == 1
    line = one_line(proc.stderr)
    assert "Python >= 3.10 is required" in line and "3.9.18" in line
    assert proc.stdout == ""
    assert not (tmp_path / "p").exists()


def test_missing_venv_module_names_the_debian_package(tmp_path: Path) -> None:
    """Debian's python3 without python3-venv: ensurepip cannot be imported."""
    shadow = tmp_path / "shadow" / "ensurepip"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('ensurepip is not installed')\n")
    real = sys.executable
    wrapper = tmp_path / "python3"
    wrapper.write_text(f'#!/bin/sh\nPYTHONPATH={shadow.parent} exec "{real}" "$@"\n')
    wrapper.chmod(0o755)
    proc = run_install(REPO / "install.sh", "--prefix", str(tmp_path / "p"), "--python", str(wrapper), cwd=tmp_path)
    assert proc.returncode == 1
    assert "apt-get install python3-venv" in one_line(proc.stderr)
    assert not (tmp_path / "p").exists()


def test_a_directory_not_made_by_install_sh_is_never_touched(tmp_path: Path) -> None:
    (tmp_path / "p" / "venv").mkdir(parents=True)
    (tmp_path / "p" / "venv" / "precious").write_text("x")
    proc = run_install(REPO / "install.sh", "--prefix", str(tmp_path / "p"), cwd=tmp_path)
    assert proc.returncode == 1
    assert "was not made by install.sh" in one_line(proc.stderr)
    gone = run_install(REPO / "install.sh", "--uninstall", "--prefix", str(tmp_path / "p"), cwd=tmp_path)
    assert gone.returncode == 0
    assert (tmp_path / "p" / "venv" / "precious").read_text() == "x"


def test_help_and_usage_errors() -> None:
    helped = run_install(REPO / "install.sh", "--help", cwd=REPO)
    assert helped.returncode == 0
    for option in ("--prefix", "--bin-dir", "--python", "--dev", "--uninstall", "--quiet"):
        assert option in helped.stdout
    bad = run_install(REPO / "install.sh", "--no-such-option", cwd=REPO)
    assert bad.returncode == 2
    assert "--no-such-option" in one_line(bad.stderr)


def test_runs_on_one_venv_take_turns(tmp_path: Path) -> None:
    """A second install.sh waits for the first (flock on the venv's parent) instead of racing pip."""
    if shutil.which("flock") is None:
        pytest.skip("flock(1) is not available")
    prefix = tmp_path / "p"
    prefix.mkdir()
    fd = os.open(prefix, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        proc = subprocess.Popen(
            [str(REPO / "install.sh"), "--uninstall", "--prefix", str(prefix)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("waiting for another install.sh")
        assert proc.poll() is None
    finally:
        os.close(fd)  # releases the lock
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "nothing to remove" in out


def test_default_locations_follow_home_and_xdg_data_home(tmp_path: Path) -> None:
    tmp_path = tmp_path.resolve()
    env = {k: v for k, v in os.environ.items() if k != "XDG_DATA_HOME"}
    for extra, venv in (
        ({}, tmp_path / ".local/share/kubectl-teleport/venv"),
        ({"XDG_DATA_HOME": str(tmp_path / "data")}, tmp_path / "data/kubectl-teleport/venv"),
    ):
        proc = subprocess.run(
            [str(REPO / "install.sh"), "--uninstall"],
            env={**env, "HOME": str(tmp_path), **extra},
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        assert f"no kubectl-teleport install at {venv}" in proc.stdout
