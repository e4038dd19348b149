"""procscan: which `kubectl-teleport start` processes run and the data dir each resolved, read from a fake /proc."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import platformdirs
import pytest

from kubectl_teleport import procscan
from kubectl_teleport.commands import doctor
from kubectl_teleport.store.datadir import ENV_DATA_DIR, DataDir

LAUNCHER = "/opt/kt/venv/bin/kubectl-teleport"
PY = "/opt/kt/venv/bin/python"


@pytest.mark.parametrize(("argv", "args"), [
    ([LAUNCHER, "start"], ["start"]),  # the launcher run by the kernel with its sh part, or pipx's link
    ([PY, "-IS", LAUNCHER, "start", "--oneshot"], ["start", "--oneshot"]),  # install.sh's #! line, the sh's exec
    ([PY, LAUNCHER, "start"], ["start"]),  # pip's console-script wrapper
    (["/bin/sh", LAUNCHER, "start"], ["start"]),  # the sh part before its exec
    (["python3", "-I", "-m", "kubectl_teleport", "start"], ["start"]),
    (["python3.11", "-mkubectl_teleport", "start", "--data-dir", "d"], ["start", "--data-dir", "d"]),
    ([PY, "-X", "importtime", "-W", "ignore", "-m", "kubectl_teleport", "start"], ["start"]),
    ([PY, "/src/kubectl_teleport/__main__.py", "start"], ["start"]),
    ([PY, "-c", "import kubectl_teleport", "start"], None),
    ([PY, "-m", "pytest", "start"], None),
    (["vim", LAUNCHER, "start"], None),  # not an interpreter
    ([PY, "/opt/kt/venv/bin/kubectl-teleport-devcluster", "start"], None),
    ([], None),
])
def test_the_cli_is_recognised_in_every_form_it_runs(argv: list[str], args: list[str] | None) -> None:
    assert procscan.cli_args(argv) == args


@pytest.mark.parametrize(("args", "expected"), [
    (["start"], (True, None)),
    (["start", "--data-dir", "/d"], (True, "/d")),
    (["start", "--data-dir=/d", "--oneshot"], (True, "/d")),
    (["start", "--data", "/d"], (True, "/d")),  # argparse's abbreviation: that process accepted it
    (["login", "--role", "start"], (False, None)),
    (["status", "--data-dir", "/d"], (False, None)),
    (["start", "--bogus"], (False, None)),  # a usage error: exited at once
])
def test_start_and_its_data_dir_come_from_the_clis_parser(args: list[str], expected: tuple) -> None:
    assert procscan.start_data_dir_arg(args) == expected


def test_help_and_version_are_no_start_and_print_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    assert procscan.start_data_dir_arg(["start", "--help"]) == (False, None)
    assert procscan.start_data_dir_arg(["--version"]) == (False, None)
    assert capsys.readouterr() == ("", "")


@pytest.mark.skipif(sys.platform != "linux", reason="procscan reads Linux's /proc; platformdirs differs elsewhere")
@pytest.mark.parametrize("xdg", [None, "", "  ", "/xdg/data"])
def test_the_user_data_dir_is_platformdirs_own(monkeypatch: pytest.MonkeyPatch, xdg: str | None) -> None:
    """The same rule as platformdirs (which reads only our own environment), so the two cannot drift apart."""
    monkeypatch.setenv("HOME", "/home/someone")
    if xdg is None:
        monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    else:
        monkeypatch.setenv("XDG_DATA_HOME", xdg)
    expected = platformdirs.user_data_dir("kubectl-teleport", appauthor=False)
    assert str(procscan.user_data_base(os.environ, "/home/someone")) == expected


def _identity(base: Path, name: str) -> Path:
    d = base / name
    d.mkdir(parents=True)
    (d / "config.json").write_text("{}")
    return d


class FakeProc:
    """A /proc with processes made of a cmdline, and optionally an environ and a cwd link."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir()

    def add(self, pid: int, argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        d = self.root / str(pid)
        d.mkdir()
        (d / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
        if env is not None:
            (d / "environ").write_bytes(b"".join(f"{k}={v}".encode() + b"\0" for k, v in env.items()))
        if cwd is not None:
            (d / "cwd").symlink_to(cwd)


def test_each_start_resolves_its_own_data_dir(tmp_path: Path) -> None:
    home = tmp_path / "home"
    default = _identity(home / ".local/share/kubectl-teleport", "tele.example.com_443")
    xdg_one = _identity(tmp_path / "xdg/kubectl-teleport", "other_443")
    two = tmp_path / "two"
    _identity(two / "kubectl-teleport", "a_443")
    _identity(two / "kubectl-teleport", "b_443")
    work = tmp_path / "work"
    work.mkdir()
    proc = FakeProc(tmp_path / "proc")
    proc.add(100, [LAUNCHER, "start", "--data-dir", "rel/bot"], {"HOME": str(home)}, cwd=work)
    proc.add(101, [PY, "-IS", LAUNCHER, "start"], {"HOME": str(home), ENV_DATA_DIR: "/srv/bot"}, cwd=work)
    proc.add(102, [PY, "-m", "kubectl_teleport", "start"], {"HOME": str(home)}, cwd=work)
    proc.add(103, [LAUNCHER, "start"], {"HOME": str(home), "XDG_DATA_HOME": str(tmp_path / "xdg")}, cwd=work)
    proc.add(104, [LAUNCHER, "start"])  # another user's: no environ, no cwd
    proc.add(105, [LAUNCHER, "start", "--data-dir", "/abs/bot"])  # absolute: needs neither
    proc.add(106, [LAUNCHER, "start"], {"HOME": str(home), "XDG_DATA_HOME": str(two)}, cwd=work)
    proc.add(107, [LAUNCHER, "start", "--data-dir", "~/bot"], {"HOME": str(home)}, cwd=work)
    proc.add(108, [LAUNCHER, "login", "--data-dir", str(default)], {"HOME": str(home)}, cwd=work)
    (tmp_path / "proc" / "self").mkdir()  # not a pid
    found = {p.pid: p for p in procscan.start_processes(tmp_path / "proc")}
    assert sorted(found) == [100, 101, 102, 103, 104, 105, 106, 107]
    assert found[100].data_dir == work / "rel/bot"
    assert found[101].data_dir == Path("/srv/bot")
    assert found[102].data_dir == default
    assert found[103].data_dir == xdg_one
    assert found[104].data_dir is None and "environment is not readable" in found[104].unknown
    assert found[105].data_dir == Path("/abs/bot")
    assert found[106].data_dir is None and "holds 2 identities" in found[106].unknown
    assert found[107].data_dir == home / "bot"


def test_doctor_counts_a_start_without_data_dir_as_the_daemon(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(doctor, "SYSTEMD_DIRS", ())
    home = tmp_path / "home"
    data = _identity(home / ".local/share/kubectl-teleport", "tele.example.com_443")
    proc = FakeProc(tmp_path / "proc")

    def daemon_row() -> dict:
        rep = doctor.Report()
        doctor.check_daemon(rep, DataDir(data), proc=tmp_path / "proc")
        return rep.rows[0]

    assert daemon_row()["level"] == "warning"
    proc.add(200, [LAUNCHER, "start"])  # its environment unreadable: said so, not taken for ours
    row = daemon_row()
    assert row["level"] == "warning" and "pid 200" in row["message"] and "cannot be told" in row["message"]
    proc.add(201, [PY, "-IS", LAUNCHER, "start"], {"HOME": str(home)}, cwd=tmp_path)
    row = daemon_row()
    assert row["level"] == "ok" and "pid 201" in row["message"]
