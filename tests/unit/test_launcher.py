"""The sh+Python launcher (scripts/kubectl-teleport) in install layouts of its own, with a stand-in package whose
`entry.main` reports how it was started; and plugin_command() choosing it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kubectl_teleport import launcher
from kubectl_teleport.outputs import kubeconfig

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "kubectl-teleport"
VERSION = f"python{sys.version_info[0]}.{sys.version_info[1]}"
REAL_PYTHON = os.path.realpath(sys.executable)
# entry.main of the stand-in package: how this process was started, then the exit code it was asked for.
ENTRY = '''import sys
from . import cache, execcred
def main():
    sys.stdout.write(__import__("json").dumps({"exe": sys.executable, "isolated": sys.flags.isolated,
        "no_site": sys.flags.no_site, "argv": sys.argv[1:], "file": __file__, "path": sys.path,
        "searched": [p for p in sys.path_importer_cache if "/site-packages" in p],
        "modules": sorted(m for m in sys.modules if m.startswith("kubectl_teleport")),
        "bound": [cache.__name__, execcred.__name__, sys.modules["kubectl_teleport"].entry.__name__]}))
    return int(sys.argv[-1]) if sys.argv[-1:] and sys.argv[-1].isdigit() else 0
'''
HOT_PATH = ["kubectl_teleport", "kubectl_teleport.cache", "kubectl_teleport.entry", "kubectl_teleport.execcred"]


def make_prefix(root: Path, *, interpreter: bool = True, venv: bool = False) -> Path:
    """root/bin/kubectl-teleport (the launcher) and root/lib/pythonX.Y/site-packages/kubectl_teleport (the
    stand-in), with root/bin/pythonX.Y linked to this interpreter unless `interpreter` is False; with `venv`, a
    venv's root/pyvenv.cfg and root/bin/python instead."""
    package = root / "lib" / VERSION / "site-packages" / "kubectl_teleport"
    package.mkdir(parents=True)
    for name, text in (("__init__", ""), ("cache", ""), ("execcred", ""), ("entry", ENTRY)):
        (package / f"{name}.py").write_text(text)
    (root / "bin").mkdir()
    shutil.copy(SCRIPT, root / "bin" / "kubectl-teleport")
    if venv:
        (root / "pyvenv.cfg").write_text(f"home = {os.path.dirname(REAL_PYTHON)}\n")
        (root / "bin" / "python").symlink_to(REAL_PYTHON)
    elif interpreter:
        (root / "bin" / VERSION).symlink_to(REAL_PYTHON)
    return root / "bin" / "kubectl-teleport"


def run(argv: list[str], *, cwd: Path | None = None, path: str | None = None,
        userbase: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    if path is not None:
        env["PATH"] = path
    if userbase is not None:
        env["PYTHONUSERBASE"] = str(userbase)
    return subprocess.run(argv, capture_output=True, text=True, cwd=cwd, env=env, timeout=30, check=False)


def started(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture
def prefix(tmp_path: Path) -> Path:
    return make_prefix(tmp_path / "venv")


def test_the_file_is_a_sh_script_and_a_python_program() -> None:
    text = SCRIPT.read_text()
    compile(text, str(SCRIPT), "exec")
    sh_part = text.split("\n':'''\n")[0]
    assert sh_part.startswith("#!/bin/sh\n''':'\n") and "$(" in sh_part  # the readlink, for symlinks only
    for shell in ("sh", "bash", "dash"):
        if shutil.which(shell):
            check = subprocess.run([shell, "-n"], input=sh_part, capture_output=True, text=True, check=False)
            assert check.returncode == 0, (shell, check.stderr)
    assert os.access(SCRIPT, os.X_OK)
    assert launcher.is_launcher(str(SCRIPT))


def test_runs_the_interpreter_beside_it_with_I_S_and_passes_arguments_unchanged(prefix: Path) -> None:
    args = ["credentials", "--data-dir", "/a b/'c'", "", "$HOME", "*", "-x"]
    got = started(run([str(prefix), *args]))
    assert got["exe"] == str(prefix.parent / VERSION)
    assert (got["isolated"], got["no_site"]) == (1, 1)
    assert got["argv"] == args
    assert os.path.realpath(got["file"]) == str((prefix.parents[1] / "lib" / VERSION / "site-packages" /
                                                 "kubectl_teleport" / "entry.py").resolve())
    assert launcher.interpreter(str(prefix)) == [got["exe"], "-IS"]
    # the install's site-packages comes after the standard library, as with site
    site_packages = [p for p in got["path"] if p.endswith("/site-packages")]
    assert site_packages == [got["path"][-1]] and os.path.samefile(site_packages[0], prefix.parents[1] / "lib" /
                                                                   VERSION / "site-packages")
    # the hot path was loaded from there by location, without a search of sys.path, and bound as imports bind
    assert got["searched"] == [] and got["modules"] == HOT_PATH
    assert got["bound"] == ["kubectl_teleport.cache", "kubectl_teleport.execcred", "kubectl_teleport.entry"]


def test_a_layout_without_the_hot_path_modules_falls_back_to_the_import_system(prefix: Path) -> None:
    package = prefix.parents[1] / "lib" / VERSION / "site-packages" / "kubectl_teleport"
    (package / "execcred.py").unlink()
    (package / "execcred").mkdir()  # a package now: not where the launcher looks
    (package / "execcred" / "__init__.py").write_text("")
    got = started(run([str(prefix), "x"]))
    assert got["modules"] == HOT_PATH and got["searched"] and got["argv"] == ["x"]


def test_in_a_venv_it_runs_the_venv_s_python_directly_or_through_a_link(tmp_path: Path) -> None:
    script = make_prefix(tmp_path / "venv", venv=True)
    (tmp_path / "link").symlink_to(script)  # pipx's ~/.local/bin
    for command in (script, tmp_path / "link"):
        got = started(run([str(command), "a b"]))
        assert got["exe"] == str(script.parent / "python") and (got["isolated"], got["no_site"]) == (1, 1)
        assert got["argv"] == ["a b"] and got["modules"] == HOT_PATH and got["searched"] == []
        assert launcher.interpreter(str(command)) == [got["exe"], "-IS"]


def test_an_editable_install_is_found_through_site_s_pth_files(tmp_path: Path) -> None:
    """pip install -e: the package stays in the checkout and a .pth file in site-packages points there."""
    script = make_prefix(tmp_path / "venv", venv=True)
    site_packages = tmp_path / "venv" / "lib" / VERSION / "site-packages"
    (tmp_path / "checkout").mkdir()
    (site_packages / "kubectl_teleport").rename(tmp_path / "checkout" / "kubectl_teleport")
    (site_packages / "__editable__.kubectl_teleport.pth").write_text(f"{tmp_path / 'checkout'}\n")
    got = started(run([str(script), "y"]))
    assert got["argv"] == ["y"] and got["modules"] == HOT_PATH
    assert got["file"].startswith(str(tmp_path / "checkout"))


def test_exit_codes_pass_through(prefix: Path) -> None:
    out = run([str(prefix), "x", "3"])
    assert out.returncode == 3 and json.loads(out.stdout)["argv"] == ["x", "3"]


@pytest.mark.parametrize("how", ["relative", "dot-slash", "sh", "double-slash", "dot-component", "on-PATH"])
def test_any_way_of_naming_it_finds_the_interpreter(prefix: Path, how: str) -> None:
    bin_dir = prefix.parent
    argv, cwd = {
        "relative": (["../bin/kubectl-teleport"], bin_dir.parent / "lib"),
        "dot-slash": (["./kubectl-teleport"], bin_dir),
        "sh": (["sh", "kubectl-teleport"], bin_dir),
        "double-slash": ([f"{bin_dir}//kubectl-teleport"], None),  # a PATH entry with a trailing slash
        "dot-component": ([f"{bin_dir}/./kubectl-teleport"], None),
        "on-PATH": (["sh", "-c", "kubectl-teleport"], None),
    }[how]
    got = started(run(argv, cwd=cwd, path=f"{bin_dir}/:{os.environ['PATH']}"))
    assert os.path.samefile(got["exe"], bin_dir / VERSION)


def test_symlinks_are_followed_to_the_install_as_pipx_links_apps(prefix: Path, tmp_path: Path) -> None:
    links = tmp_path / "local" / "bin"
    links.mkdir(parents=True)
    (links / "kubectl-teleport").symlink_to(prefix)  # pipx: ~/.local/bin/kubectl-teleport -> the venv
    (links / "relative").symlink_to(os.path.relpath(prefix, links))
    (links / "chain").symlink_to(links / "relative")
    for name in ("kubectl-teleport", "relative", "chain"):
        got = started(run([str(links / name), "status"]))
        assert got["exe"] == str(prefix.parent / VERSION) and got["argv"] == ["status"]
        assert launcher.interpreter(str(links / name)) == [got["exe"], "-IS"]
        assert launcher.resolve(str(links / name)) == str(prefix)


def test_no_fork_unless_it_is_a_symlink(prefix: Path, tmp_path: Path) -> None:
    """The only command the sh part runs is readlink, and only for a symlink: the hot path is one exec."""
    spy = tmp_path / "spy"
    spy.mkdir()
    calls = tmp_path / "readlink-calls"
    real = shutil.which("readlink")
    (spy / "readlink").write_text(f'#!/bin/sh\necho "$@" >>{calls}\nexec {real} "$@"\n')
    (spy / "readlink").chmod(0o755)
    path = f"{spy}:{os.environ['PATH']}"
    started(run([str(prefix)], path=path))
    assert not calls.exists()
    (tmp_path / "link").symlink_to(prefix)
    started(run([str(tmp_path / "link")], path=path))
    assert calls.read_text().split() == ["--", str(tmp_path / "link")]


def test_without_an_interpreter_beside_it_uses_the_same_version_on_path(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """pip install --user: ~/.local/bin/kubectl-teleport, ~/.local/lib/pythonX.Y/site-packages (the user site),
    the same Python version on PATH, started with its site."""
    script = make_prefix(tmp_path / "user", interpreter=False)
    pybin = tmp_path / "pybin"
    pybin.mkdir()
    (pybin / VERSION).symlink_to(REAL_PYTHON)
    got = started(run([str(script), "a"], path=f"{pybin}:/usr/bin:/bin", userbase=tmp_path / "user"))
    assert got["exe"] == str(pybin / VERSION) and (got["isolated"], got["no_site"]) == (0, 0)
    assert got["argv"] == ["a"] and got["modules"] == HOT_PATH
    monkeypatch.setenv("PATH", f"{pybin}:/usr/bin:/bin")
    assert launcher.interpreter(str(script)) == [str(pybin / VERSION)]


def test_no_interpreter_at_all_is_one_line_and_exit_127(tmp_path: Path) -> None:
    script = make_prefix(tmp_path / "lone", interpreter=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    out = subprocess.run(["/bin/sh", str(script)], capture_output=True, text=True, check=False,
                         env={"PATH": str(empty)})
    assert out.returncode == 127 and out.stdout == ""
    assert out.stderr.count("\n") == 1 and "no Python interpreter found" in out.stderr


def test_install_sh_points_the_first_line_at_the_interpreter(prefix: Path, tmp_path: Path) -> None:
    python = str(prefix.parent / VERSION)
    assert launcher.point_at_interpreter(str(prefix), python)
    text = prefix.read_text()
    assert text.split("\n", 1) == [f"#!{python} -IS", SCRIPT.read_text().split("\n", 1)[1]]
    assert os.stat(prefix).st_mode & 0o777 == 0o755 and launcher.is_launcher(str(prefix))
    assert launcher.interpreter(str(prefix)) == [python, "-IS"]
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "kubectl-teleport").symlink_to(os.path.relpath(prefix, tmp_path / "bin"))  # install.sh's
    for command in (prefix, tmp_path / "bin" / "kubectl-teleport"):  # the kernel starts python: no sh
        got = started(run([str(command), "x"]))
        assert got["exe"] == python and (got["isolated"], got["no_site"]) == (1, 1) and got["argv"] == ["x"]
        assert got["modules"] == HOT_PATH and got["searched"] == []  # loaded from the link's target install
    assert launcher.point_at_interpreter(str(prefix), python)  # again: the same file
    assert prefix.read_text() == text
    too_long = "/" + "x" * 130 + "/python"
    assert not launcher.point_at_interpreter(str(prefix), too_long) and prefix.read_text() == text
    other = tmp_path / "other"
    other.write_text("#!/bin/sh\necho hi\n")
    assert not launcher.point_at_interpreter(str(other), python) and other.read_text() == "#!/bin/sh\necho hi\n"


def test_interpreter_of_other_scripts_is_their_shebang(tmp_path: Path) -> None:
    wrapper = tmp_path / "kubectl-teleport"
    wrapper.write_text("#!/venv/bin/python -IS\nimport sys\n")
    assert launcher.interpreter(str(wrapper)) == ["/venv/bin/python", "-IS"]
    assert not launcher.is_launcher(str(wrapper))
    wrapper.write_bytes(b"\x7fELF")
    assert launcher.interpreter(str(wrapper)) is None
    assert launcher.interpreter(str(tmp_path / "missing")) is None


def test_plugin_command_is_the_launcher_running_us_even_through_a_pipx_link(
        prefix: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    link = tmp_path / "dotlocal-bin" / "kubectl-teleport"
    link.parent.mkdir()
    link.symlink_to(prefix)
    shims = tmp_path / "pyenv" / "shims"
    shims.mkdir(parents=True)
    (shims / "kubectl-teleport").write_text("#!/usr/bin/env bash\nexec pyenv exec kubectl-teleport \"$@\"\n")
    (shims / "kubectl-teleport").chmod(0o755)
    monkeypatch.setenv("PATH", f"{shims}:/usr/bin:/bin")
    monkeypatch.setattr(sys, "executable", str(tmp_path / "elsewhere" / "python3"))
    monkeypatch.setattr(sys, "argv", [str(link), "login"])
    assert kubeconfig.plugin_command() == str(prefix)
    # run from elsewhere (tests, python -m): the launcher beside the interpreter, never the shim on PATH
    monkeypatch.setattr(sys, "argv", ["/usr/lib/something/pytest"])
    monkeypatch.setattr(sys, "executable", str(prefix.parent / VERSION))
    assert kubeconfig.plugin_command() == str(prefix)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "elsewhere" / "python3"))
    assert kubeconfig.plugin_command() == "/usr/lib/something/pytest"
    monkeypatch.setenv("PATH", f"{link.parent}:{shims}:/usr/bin:/bin")  # pipx's bin dir on PATH
    assert kubeconfig.plugin_command() == str(prefix)
