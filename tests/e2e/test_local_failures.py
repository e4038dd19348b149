"""Local failures on real file systems: a full or read-only data dir, killed writers, bad kubeconfigs.

The data dir lives on a small tmpfs mounted for the test (root only; skipped elsewhere), filled until ENOSPC
or remounted read-only. What must hold:

- a due but valid certificate is served (exit 0, one warning line naming the problem) and nothing is asked of
  the server that could not be stored; an expired one fails with one line and exit 9;
- `start --oneshot` and `login` fail with one line and exit 9, and `login` never spends its token on a local
  problem (the same token logs in once the problem is fixed);
- temp files of killed writers (they may hold a private key) are removed under the lock, and `logout` leaves
  nothing but the lock file;
- a symlinked ~/.kube/config is written through to its target, atomically.
"""

from __future__ import annotations

import errno
import os
import random
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from harness.soak import SHIFTED  # the CLI with the plugin's clock moved by argv[1] seconds
from kubectl_teleport import errors, pki
from tests.conftest import bin_path
from tests.plugin_helpers import (
    EXEC_INFO_V1,
    KUBE_CLUSTER,
    cert_of,
    credentials,
    join_args,
    kubectl_run,
    login,
    make_due,
    plugin,
)

PROG = "kubectl-teleport"
PROBLEM = {"full": "No space left on device", "ro": "Read-only file system"}
COUNTERS = ("joins", "kube_certs_issued", "identity_renewals")


# a real, small file system ------------------------------------------------------------------------------------

@dataclass
class Tmpfs:
    """A tmpfs mounted at `path` that a test can fill up or make read-only."""

    path: Path
    size: str = "512k"

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(list(args), capture_output=True, text=True, timeout=30, check=False)

    def mount(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        out = self._run("mount", "-t", "tmpfs", "-o", f"size={self.size},mode=0700", "tmpfs", str(self.path))
        if out.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs at {self.path}: {out.stderr.strip() or out.returncode}")

    def umount(self) -> None:
        if self._run("umount", str(self.path)).returncode != 0:
            self._run("umount", "-l", str(self.path))  # a child still holding a file: detach it anyway

    def fill(self) -> None:
        """Write a filler file until the file system refuses even one more byte (ENOSPC)."""
        fd = os.open(self.path / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            chunk = 1 << 16
            while chunk:
                try:
                    os.write(fd, bytes(chunk))
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
                    chunk //= 2
        finally:
            os.close(fd)
        with pytest.raises(OSError, match="No space left"):
            (self.path / "probe").write_bytes(b"x" * 4096)

    def free(self) -> None:
        (self.path / "filler").unlink()
        (self.path / "probe").unlink(missing_ok=True)

    def remount(self, mode: str) -> None:
        out = self._run("mount", "-o", f"remount,{mode}", str(self.path))
        assert out.returncode == 0, out.stderr

    def break_(self, how: str) -> None:
        """Make the file system full (`full`) or read-only (`ro`)."""
        self.fill() if how == "full" else self.remount("ro")

    def fix(self, how: str) -> None:
        self.free() if how == "full" else self.remount("rw")


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[..., Tmpfs]]:
    """Mount small tmpfs file systems under tmp_path (root only: the test is skipped otherwise); all unmounted
    after the test."""
    mounted: list[Tmpfs] = []

    def make(name: str = "fs", size: str = "512k") -> Tmpfs:
        if os.geteuid() != 0:
            pytest.skip("mounting a tmpfs needs root")
        if shutil.which("mount") is None:
            pytest.skip("no mount command")
        fs = Tmpfs(tmp_path / name, size)
        fs.mount()
        mounted.append(fs)
        return fs

    try:
        yield make
    finally:
        for fs in reversed(mounted):
            fs.umount()


# helpers -----------------------------------------------------------------------------------------------------

def counters(dc) -> dict[str, int]:
    stats = dc.stats()
    return {k: stats[k] for k in COUNTERS}


def one_line(stderr: str, kind: str) -> str:
    """The single `kubectl-teleport: <kind>: ...` line of stderr (no traceback, nothing else)."""
    assert "Traceback" not in stderr, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"{PROG}: {kind}: "), stderr
    return lines[0]


def run_plugin(*args: str, home: Path | None = None) -> subprocess.CompletedProcess:
    """The installed plugin with HOME (when given) and without $KUBECONFIG, so ~/.kube/config is `home`'s."""
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    if home is not None:
        env["HOME"] = str(home)
    return subprocess.run([str(bin_path(PROG)), *args], capture_output=True, text=True, env=env, timeout=60,
                          check=False)


def login_args(bot: dict, *extra: str) -> list[str]:
    """A Teleport login (the devcluster's web CA must be trusted: `trust_web`)."""
    return ["login", *join_args(bot), "--kube-cluster", KUBE_CLUSTER, *extra]


def trust_web(monkeypatch: pytest.MonkeyPatch, devcluster) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", devcluster.web_ca_file)


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen(["true"])
    child.wait()
    with pytest.raises(ProcessLookupError):
        os.kill(child.pid, 0)
    return child.pid


def temps(data: Path) -> list[str]:
    """Every writer's temp file under the data dir."""
    return sorted(str(p.relative_to(data)) for p in data.rglob(".*.tmp"))


def cached_cert(data: Path) -> str:
    """The certificate the cache holds now (read by the plugin's own hot path)."""
    out = credentials(data)
    assert out.returncode == 0 and not out.stderr, out.stderr
    return cert_of(out.stdout)


# 1-3: a full or read-only data dir ----------------------------------------------------------------------------

def credentials_at(data: Path, offset: float) -> subprocess.CompletedProcess:
    """`credentials` as the installed plugin runs it, `offset` seconds in the future."""
    if not offset:
        return credentials(data)
    return subprocess.run([sys.executable, "-I", "-c", SHIFTED, repr(offset), "credentials", "--data-dir",
                           str(data), "--kube-cluster", KUBE_CLUSTER], capture_output=True, text=True,
                          env={**os.environ, "KUBERNETES_EXEC_INFO": EXEC_INFO_V1}, timeout=60, check=False)


@pytest.mark.parametrize(("how", "offset"), [("full", 0), ("ro", 0), ("full", 45 * 60)],
                         ids=["full", "read-only", "full-identity-due-too"])
def test_due_valid_certificate_is_served_with_one_warning_and_nothing_issued(devcluster, tmpfs, how, offset):
    fs = tmpfs()
    data = fs.path / "bot"
    login(devcluster, data)  # a 1 h identity and certificate: 45 min on, both are due and still valid
    cached = cached_cert(data)
    make_due(data)
    before = counters(devcluster)
    fs.break_(how)
    for _ in range(2):  # every call, not just the first
        out = credentials_at(data, offset)
        assert out.returncode == 0, out.stderr
        assert cert_of(out.stdout) == cached
        line = one_line(out.stderr, "warning")
        assert PROBLEM[how] in line and "serving the cached certificate" in line, line
    assert counters(devcluster) == before  # failed before asking: nothing issued that could not be stored
    fs.fix(how)
    out = credentials_at(data, offset)  # the next call after the fix renews
    assert out.returncode == 0 and not out.stderr, out.stderr
    assert cert_of(out.stdout) != cached
    after = counters(devcluster)
    assert after["kube_certs_issued"] == before["kube_certs_issued"] + 1
    assert after["identity_renewals"] == before["identity_renewals"] + bool(offset)
    assert temps(data) == []


@pytest.mark.parametrize("how", ["full", "ro"])
def test_expired_certificate_fails_with_one_line_and_exit_9(devcluster, tmpfs, how):
    fs = tmpfs()
    data = fs.path / "bot"
    login(devcluster, data)
    make_due(data, expired=True)
    before = counters(devcluster)
    fs.break_(how)
    out = credentials(data)
    assert out.returncode == errors.UNSAFE_STATE, out.stderr
    assert out.stdout == ""
    assert PROBLEM[how] in one_line(out.stderr, "error")
    assert counters(devcluster) == before
    fs.fix(how)
    assert credentials(data).returncode == 0


@pytest.mark.parametrize("how", ["full", "ro"])
def test_start_oneshot_on_a_broken_data_dir_is_one_line_exit_9(devcluster, tmpfs, how):
    fs = tmpfs()
    data = fs.path / "bot"
    login(devcluster, data)
    make_due(data)
    before = counters(devcluster)
    fs.break_(how)
    out = plugin("start", "--oneshot", "--data-dir", str(data))
    assert out.returncode == errors.UNSAFE_STATE, out.stderr
    assert PROBLEM[how] in one_line(out.stderr, "error")
    assert counters(devcluster) == before
    fs.fix(how)
    out = plugin("start", "--oneshot", "--data-dir", str(data))
    assert out.returncode == 0, out.stderr
    after = counters(devcluster)
    assert after["identity_renewals"] == before["identity_renewals"] + 1
    assert after["kube_certs_issued"] == before["kube_certs_issued"] + 1


# 4, 6: login checks everything local before it spends the token ----------------------------------------------

@dataclass
class Case:
    """One local problem: `args` for login (after the bot's flags), the exit codes allowed, the words the line
    must hold, and how to fix it afterwards."""

    args: list[str]
    codes: tuple[int, ...]
    words: str
    fix: Callable[[], None]
    home: Path | None = None


def _datadir_case(how: str, relogin: bool) -> Callable[..., Case]:
    def make(dc, tmp_path: Path, tmpfs) -> Case:
        fs = tmpfs()
        data = fs.path / "bot"
        if relogin:
            login(dc, data)  # an identity is there: the new token replaces it
        fs.break_(how)
        return Case(["--data-dir", str(data)], (errors.UNSAFE_STATE,), PROBLEM[how], lambda: fs.fix(how))
    return make


def _merge_unparseable(dc, tmp_path: Path, tmpfs) -> Case:
    home = tmp_path / "home"
    config = home / ".kube" / "config"
    config.parent.mkdir(parents=True)
    config.write_text("apiVersion: v1\nclusters: [\n  - name: broken\n")
    return Case(["--data-dir", str(tmp_path / "bot"), "--merge"], (errors.USAGE,), str(config),
                lambda: config.write_text("apiVersion: v1\nkind: Config\n"), home)


def _kubeconfig_dir_ro(dc, tmp_path: Path, tmpfs) -> Case:
    fs = tmpfs("kc")
    (fs.path / "kube").mkdir()
    fs.remount("ro")
    return Case(["--data-dir", str(tmp_path / "bot"), "--kubeconfig", str(fs.path / "kube" / "config")],
                (errors.UNSAFE_STATE,), PROBLEM["ro"], lambda: fs.remount("rw"))


def _kubeconfig_dir_full(dc, tmp_path: Path, tmpfs) -> Case:
    fs = tmpfs("kc")
    fs.fill()
    return Case(["--data-dir", str(tmp_path / "bot"), "--kubeconfig", str(fs.path / "config")],
                (errors.UNSAFE_STATE,), PROBLEM["full"], fs.free)


def _kubeconfig_under_a_file(dc, tmp_path: Path, tmpfs) -> Case:
    blocker = tmp_path / "notadir"
    blocker.write_text("a regular file\n")
    return Case(["--data-dir", str(tmp_path / "bot"), "--kubeconfig", str(blocker / "config")],
                (errors.UNSAFE_STATE, errors.USAGE), str(blocker), blocker.unlink)


LOGIN_CASES = {
    "data-dir-full-first-login": _datadir_case("full", relogin=False),
    "data-dir-full-relogin": _datadir_case("full", relogin=True),
    "data-dir-read-only-first-login": _datadir_case("ro", relogin=False),
    "data-dir-read-only-relogin": _datadir_case("ro", relogin=True),
    "merge-unparseable-kube-config": _merge_unparseable,
    "kubeconfig-dir-read-only": _kubeconfig_dir_ro,
    "kubeconfig-dir-full": _kubeconfig_dir_full,
    "kubeconfig-under-a-regular-file": _kubeconfig_under_a_file,
}


@pytest.mark.parametrize("name", list(LOGIN_CASES))
def test_login_local_problem_is_reported_before_the_token_is_spent(devcluster, tmp_path, tmpfs, name, monkeypatch):
    trust_web(monkeypatch, devcluster)
    case = LOGIN_CASES[name](devcluster, tmp_path, tmpfs)
    bot = devcluster.add_bot()  # a new, unused token
    before = counters(devcluster)
    out = run_plugin(*login_args(bot, *case.args), home=case.home)
    assert out.returncode in case.codes, out.stderr
    assert out.stdout == ""
    assert case.words in one_line(out.stderr, "error")
    assert bot["token"] not in out.stderr
    assert counters(devcluster) == before  # the token was not sent
    case.fix()
    out = run_plugin(*login_args(bot, *case.args), home=case.home)
    assert out.returncode == 0, out.stderr  # the same token still works, once
    assert counters(devcluster)["joins"] == before["joins"] + 1


# 5: killed writers --------------------------------------------------------------------------------------------

def _plant_temps(data: Path, pid: int) -> list[str]:
    key = pki.private_key_pem(pki.generate_key())
    planted = [f".identity.pem.{pid}.tmp", f"kube/.{KUBE_CLUSTER}.cred.{pid}.tmp"]
    for rel in planted:
        fd = os.open(data / rel, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key)
    return planted


def _key_files(data: Path) -> list[str]:
    return sorted(str(p.relative_to(data)) for p in data.rglob("*")
                  if p.is_file() and b"PRIVATE KEY" in p.read_bytes())


def test_stale_temp_files_of_dead_writers_are_removed_and_logout_leaves_only_the_lock(devcluster, tmp_path):
    data = tmp_path / "bot"
    login(devcluster, data)
    live = subprocess.Popen(["sleep", "60"])  # a writer that is still alive: its temp file is not stale
    try:
        planted = _plant_temps(data, dead_pid())
        live_temp = f".config.json.{live.pid}.tmp"
        (data / live_temp).write_bytes(b"{}")
        make_due(data)
        out = credentials(data)
        assert out.returncode == 0 and not out.stderr, out.stderr
        assert temps(data) == [live_temp]  # the dead writers' keys are gone, the live writer's file stays
        planted = _plant_temps(data, dead_pid())
        assert set(planted) <= set(temps(data))
        out = plugin("logout", "--data-dir", str(data))
        assert out.returncode == 0, out.stderr
        assert "Traceback" not in out.stderr
    finally:
        live.kill()
        live.wait()
    assert _key_files(data) == []
    assert [p.name for p in data.iterdir()] == ["lock"]  # the lock file stays (removing it would race)


def _renewal(data: Path) -> subprocess.Popen:
    return subprocess.Popen([str(bin_path(PROG)), "credentials", "--data-dir", str(data), "--kube-cluster",
                             KUBE_CLUSTER], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "KUBERNETES_EXEC_INFO": EXEC_INFO_V1})


def _wait_for_temp(proc: subprocess.Popen, data: Path, bound: float = 10.0) -> None:
    """Return as soon as `proc` has a temp file in the data dir (or has exited)."""
    end = time.monotonic() + bound
    mine = f".{proc.pid}.tmp"
    while proc.poll() is None and time.monotonic() < end:
        if any(e.name.endswith(mine) for d in (data, data / "kube") for e in os.scandir(d)):
            return
        time.sleep(0.0005)


def test_renewals_killed_at_random_moments_leave_no_temp_file_after_the_next_call(devcluster, tmp_path):
    data = tmp_path / "bot"
    login(devcluster, data)
    make_due(data)
    start = time.monotonic()
    assert credentials(data).returncode == 0
    duration = time.monotonic() - start  # one uninterrupted renewal
    rng = random.Random(9)
    left_behind = 0
    for trial in range(20):
        make_due(data)
        proc = _renewal(data)
        if trial % 2:
            time.sleep(rng.uniform(0, duration * 1.1))  # anywhere: start-up, lock, network, commit, done
        else:
            _wait_for_temp(proc, data)  # right in the window where a reserved temp file exists
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        left_behind += any(f".{proc.pid}.tmp" in name for name in temps(data))
    assert left_behind >= 5, left_behind  # the kills did leave temp files behind
    make_due(data)
    out = credentials(data)
    assert out.returncode == 0, out.stderr
    assert temps(data) == []


# 7: a symlinked ~/.kube/config --------------------------------------------------------------------------------

def test_merge_writes_through_a_symlinked_kube_config(devcluster, kubectl, tmp_path, monkeypatch):
    trust_web(monkeypatch, devcluster)
    home = tmp_path / "home"
    target = home / "dotfiles" / "kubeconfig"
    target.parent.mkdir(parents=True)
    other = {"apiVersion": "v1", "kind": "Config", "current-context": "other",
             "clusters": [{"name": "other", "cluster": {"server": "https://other.example:6443"}}],
             "users": [{"name": "other", "user": {"token": "abc"}}],
             "contexts": [{"name": "other", "context": {"cluster": "other", "user": "other"}}]}
    target.write_text(yaml.safe_dump(other))
    target.chmod(0o644)
    link = home / ".kube" / "config"
    link.parent.mkdir()
    link.symlink_to(Path("..") / "dotfiles" / "kubeconfig")  # relative, as stow and friends make them
    inode = target.stat().st_ino
    bot = devcluster.add_bot()
    out = run_plugin(*login_args(bot, "--data-dir", str(tmp_path / "bot"), "--merge"), home=home)
    assert out.returncode == 0, out.stderr
    assert link.is_symlink() and os.readlink(link) == str(Path("..") / "dotfiles" / "kubeconfig")
    st = os.lstat(target)
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_ino != inode  # replaced by a rename (atomic), not rewritten in place
    assert sorted(p.name for p in target.parent.iterdir()) == ["kubeconfig"]  # no temp file left
    doc = yaml.safe_load(target.read_text())
    ours = f"{devcluster.cluster_name}-{KUBE_CLUSTER}"
    assert {c["name"] for c in doc["contexts"]} == {"other", ours}
    assert doc["current-context"] == "other" and doc["users"][0] == other["users"][0]
    pods = kubectl_run(kubectl, link, home, "--context", ours, "get", "pods", "-n", "demo")
    assert pods.returncode == 0, pods.stderr
