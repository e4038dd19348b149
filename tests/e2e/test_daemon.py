"""The renewal daemon (`kubectl-teleport start`): scheduling with an injected clock in-process, and the real
daemon as a subprocess for signals, --oneshot and concurrency with kubectl's `credentials` calls."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from kubectl_teleport import cache, errors, pki
from kubectl_teleport.commands import start as daemon
from kubectl_teleport.commands import systemd_unit as systemd
from kubectl_teleport.issuer import renewal
from kubectl_teleport.store import identity
from kubectl_teleport.store.datadir import DataDir
from tests.conftest import bin_path
from tests.plugin_helpers import KUBE_CLUSTER, cert_of, credentials, login, make_due, plugin

INTERVAL = 1200.0
SECOND = "second-cluster"


class FakeClock:
    """now() stands still until the daemon waits; wait(s) moves it and may run a script for that wait."""

    def __init__(self, start: float, script: dict | None = None, stop_after: int = 3) -> None:
        self.t = start
        self.start = start
        self.waits: list[float] = []
        self.script = script or {}
        self.stop_after = stop_after
        self.daemon: daemon.Daemon | None = None

    def now(self) -> float:
        return self.t

    def wait(self, seconds: float) -> None:
        assert self.daemon is not None
        self.waits.append(seconds)
        if len(self.waits) >= self.stop_after:
            self.daemon.request_stop()
            return
        action = self.script.get(len(self.waits))
        if action == "hup":
            self.daemon.request_reload()  # like SIGHUP: the wait ends early
            return
        self.t += seconds


def make_daemon(dd: DataDir, fc: FakeClock, lines: list[str], **kw) -> daemon.Daemon:
    d = daemon.Daemon(dd, interval=INTERVAL, now=fc.now, wait=fc.wait, log=lambda m, _p: lines.append(m),
                      rng=lambda: 0.5, **kw)  # rng 0.5: no jitter
    fc.daemon = d
    return d


def set_renew_at(dd: DataDir, cluster: str, renew_at: float) -> None:
    """Make a cached certificate due at `renew_at` (its expiry unchanged)."""
    path = dd.cache_path(cluster)
    entry = cache.decode(path.read_bytes())
    path.write_bytes(cache.encode(int(renew_at), entry.expires_at, entry.not_after, entry.status))


@pytest.fixture
def bot_dir(devcluster, tmp_path) -> DataDir:
    data = tmp_path / "bot"
    login(devcluster, data)
    return DataDir(data)


# scheduling, with an injected clock (in-process, real devcluster) ----------------------------------------------

def test_wakes_early_for_a_due_cert_and_renews_identity_every_interval(devcluster, bot_dir):
    t0 = float(int(time.time()))
    set_renew_at(bot_dir, KUBE_CLUSTER, t0 + 600)  # due 10 min from now, before the 20 min tick
    old = bot_dir.read_entry(KUBE_CLUSTER)
    before = devcluster.stats()
    fc, lines = FakeClock(t0), []
    assert make_daemon(bot_dir, fc, lines).serve() == 0
    after = devcluster.stats()
    # start: identity renewed; wait 600 s (the cert's renew-at, not the 1200 s tick); cert renewed at t0+600,
    # well before it expires; wait the remaining 600 s to the tick; identity renewed again; stop.
    assert fc.waits[:2] == [600, 600]
    assert after["identity_renewals"] == before["identity_renewals"] + 2
    assert after["kube_certs_issued"] == before["kube_certs_issued"] + 1
    assert t0 + 600 < old.expires_at
    assert bot_dir.read_entry(KUBE_CLUSTER).status != old.status
    reasons = [m.group(1) for m in map(re.compile(r"renewal done \((\w+)\)").search, lines) if m]
    assert reasons == ["start", "due", "interval"]
    assert lines[-1] == "stopped"
    assert identity.load(bot_dir).generation == 3


def test_a_renewal_in_doubt_is_held_and_logged_as_a_warning_on_every_cycle(devcluster, bot_dir):
    """A record of a renewal that left and got no answer: the daemon renews nothing from that generation before
    `retry_at`, keeps issuing from the identity it has, and says so at warning priority each cycle."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    ident = identity.load(bot_dir)
    key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    identity.save_pending(bot_dir, identity.Pending(key, ident.generation, time.time() - 5, sent=True))
    before = devcluster.stats()["identity_renewals"]
    fc, logged = FakeClock(float(int(time.time())), stop_after=3), []
    d = daemon.Daemon(bot_dir, interval=INTERVAL, now=fc.now, wait=fc.wait, rng=lambda: 0.5,
                      log=lambda m, p: logged.append((p, m)))
    fc.daemon = d
    d.serve()
    assert devcluster.stats()["identity_renewals"] == before  # held: start and interval ticks renewed nothing
    assert identity.load(bot_dir).generation == ident.generation and bot_dir.pending_path.exists()
    warnings = [m for p, m in logged if p == 4]
    assert len(warnings) == 3 and all("was lost" in m and "new join token" in m for m in warnings), logged
    assert "BEGIN" not in "".join(m for _, m in logged)


def test_interval_is_jittered_by_ten_percent(devcluster, bot_dir):
    for rng, expected in ((0.0, 0.9 * INTERVAL), (1.0, 1.1 * INTERVAL), (0.5, INTERVAL)):
        fc, lines = FakeClock(float(int(time.time())), stop_after=1), []
        d = make_daemon(bot_dir, fc, lines)
        d.rng = lambda r=rng: r
        d.serve()
        assert fc.waits == [pytest.approx(expected)]


def test_reload_renews_everything_exactly_once(devcluster, tmp_path):
    devcluster.admin("kube", "add", SECOND, "--labels", "env=dev")
    data = tmp_path / "bot"
    login(devcluster, data, "--kube-cluster", SECOND)
    dd = DataDir(data)
    fc, lines = FakeClock(float(int(time.time())), script={1: "hup"}, stop_after=2), []
    d = make_daemon(dd, fc, lines)
    before = devcluster.stats()
    old = {c: dd.read_entry(c).status for c in (KUBE_CLUSTER, SECOND)}
    d.serve()
    after = devcluster.stats()
    # start renews the identity only (certificates fresh); the reload renews the identity and both certificates
    assert after["identity_renewals"] == before["identity_renewals"] + 2
    assert after["kube_certs_issued"] == before["kube_certs_issued"] + 2
    assert all(dd.read_entry(c).status != old[c] for c in old)
    assert sum("renewal done (reload)" in line for line in lines) == 1


def test_backs_off_while_the_issuer_is_away(devcluster, bot_dir):
    ident = identity.load(bot_dir)
    devcluster.stop()
    fc, lines = FakeClock(float(int(time.time())), stop_after=9), []
    make_daemon(bot_dir, fc, lines, timeout=0.3).serve()
    assert fc.waits == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    failures = [line for line in lines if line.startswith("renewal failed")]
    assert len(failures) == 9 and "retrying in 1s" in failures[0] and "retrying in 60s" in failures[-1]
    assert all("cannot reach" in line or "did not answer" in line for line in failures)
    assert identity.load(bot_dir).cert_pem == ident.cert_pem  # nothing committed
    assert not bot_dir.pending_path.exists()  # nothing was sent: no renewal in doubt
    assert all("BEGIN" not in line for line in lines)


def test_recovers_after_the_issuer_comes_back(devcluster, bot_dir, monkeypatch):
    real = renewal.teleport.renew_identity
    calls = []

    def flaky(*args, **kw):
        calls.append(1)
        if len(calls) <= 3:  # refused before sending: not a renewal in doubt, so the backoff retries it
            raise errors.Unavailable("renewing the bot identity failed: cannot reach the proxy")
        return real(*args, **kw)

    monkeypatch.setattr(renewal.teleport, "renew_identity", flaky)
    gen = identity.load(bot_dir).generation
    before = devcluster.stats()
    fc, lines = FakeClock(float(int(time.time())), stop_after=5), []
    make_daemon(bot_dir, fc, lines).serve()
    # three failures (1, 2, 4 s), the retry succeeds, then a full interval; the retry is the tick's renewal
    assert fc.waits[:4] == [1, 2, 4, INTERVAL]
    assert identity.load(bot_dir).generation == gen + 2  # the recovered start renewal and the next tick
    assert devcluster.stats()["identity_renewals"] == before["identity_renewals"] + 2


def test_expired_identity_waits_for_the_next_tick_without_spinning(devcluster, bot_dir):
    expired = identity.load(bot_dir).not_after + 1
    fc, lines = FakeClock(expired, stop_after=3), []
    make_daemon(bot_dir, fc, lines).serve()
    assert fc.waits == [INTERVAL, INTERVAL, INTERVAL]
    assert "log in again" in lines[1] and devcluster.stats()["identity_renewals"] == 0


# the real daemon as a subprocess ---------------------------------------------------------------------------------

class DaemonProcess:
    """`kubectl-teleport start` with stderr in a file, polled for log lines with a bounded deadline."""

    def __init__(self, tmp: Path, *args: str) -> None:
        self.log_path = tmp / f"daemon-{time.monotonic_ns()}.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([str(bin_path("kubectl-teleport")), "start", *args], stderr=log,
                                         stdout=subprocess.DEVNULL)

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_for(self, text: str, count: int = 1, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.log().count(text) < count:
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited {self.proc.returncode}: {self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} x{count} within {timeout}s: {self.log()}")
            time.sleep(0.01)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


def test_sighup_renews_everything_exactly_once(devcluster, tmp_path):
    devcluster.admin("kube", "add", SECOND, "--labels", "env=dev")
    data = tmp_path / "bot"
    login(devcluster, data, "--kube-cluster", SECOND)
    d = DaemonProcess(tmp_path, "--data-dir", str(data))
    try:
        d.wait_for("renewal done (start)")
        before = devcluster.stats()
        d.proc.send_signal(signal.SIGHUP)
        d.wait_for("renewal done (reload)")
        assert d.stop() == 0
    finally:
        d.stop()
    after = devcluster.stats()
    assert after["identity_renewals"] == before["identity_renewals"] + 1
    assert after["kube_certs_issued"] == before["kube_certs_issued"] + 2
    log = d.log()
    assert log.count("renewal started") == 2 and log.strip().endswith("stopped")
    assert "BEGIN" not in log and "PRIVATE" not in log


def _assert_consistent(data: Path, dest: Path | None = None) -> None:
    dd = DataDir(data)
    identity.load(dd)  # parses, and the key matches the certificate
    for cred in (data / "kube").glob("*.cred"):
        entry = cache.decode(cred.read_bytes())
        assert entry is not None, cred
        status = json.loads(entry.status)
        cert = pki.load_cert(status["clientCertificateData"])
        key = pki.load_private_key(status["clientKeyData"])
        assert pki.public_keys_equal(cert.public_key(), key.public_key())
    leftovers = [p for p in data.rglob(".*.tmp")]
    if dest is not None:
        leftovers += list(dest.rglob(".*.tmp"))
        pem = (dest / "identity").read_text()
        key = pki.load_private_key(pem)
        assert pki.public_keys_equal(pki.load_certs(pem)[0].public_key(), key.public_key())
        assert pki.public_keys_equal(pki.load_cert((dest / "tlscert").read_text()).public_key(),
                                     pki.load_private_key((dest / "key").read_text()).public_key())
    assert leftovers == []


@pytest.mark.parametrize("when", ["start", "reload"])
def test_sigterm_during_a_renewal_exits_cleanly_with_consistent_files(devcluster, tmp_path, when):
    data, dest = tmp_path / "bot", tmp_path / "out"
    login(devcluster, data, "--destination", str(dest))
    d = DaemonProcess(tmp_path, "--data-dir", str(data))
    try:
        if when == "reload":
            d.wait_for("renewal done (start)")
            d.proc.send_signal(signal.SIGHUP)
        d.wait_for(f"renewal started ({when})")
        d.proc.send_signal(signal.SIGTERM)  # while the renewal runs
        assert d.proc.wait(30) == 0, d.log()
    finally:
        d.stop()
    assert d.log().strip().endswith("stopped")
    _assert_consistent(data, dest)
    out = credentials(data)
    assert out.returncode == 0, out.stderr
    assert devcluster.stats()["bots_locked"] == 0


def test_daemon_and_twenty_credentials_calls_issue_once_per_due_cert(devcluster, tmp_path):
    devcluster.admin("kube", "add", SECOND, "--labels", "env=dev")
    data = tmp_path / "bot"
    login(devcluster, data, "--kube-cluster", SECOND)
    make_due(data, KUBE_CLUSTER)
    make_due(data, SECOND)
    before = devcluster.stats()["kube_certs_issued"]
    d = DaemonProcess(tmp_path, "--data-dir", str(data))
    try:
        with ThreadPoolExecutor(20) as pool:
            results = list(pool.map(lambda i: credentials(data, (KUBE_CLUSTER, SECOND)[i % 2]), range(20)))
        d.wait_for("renewal done (start)")
        assert d.stop() == 0
    finally:
        d.stop()
    assert [r.returncode for r in results] == [0] * 20, [r.stderr for r in results if r.returncode]
    assert devcluster.stats()["kube_certs_issued"] == before + 2
    # every call from now on gets the one new certificate of its cluster
    assert cert_of(credentials(data).stdout) == cert_of(credentials(data).stdout)


def test_oneshot_exit_codes(devcluster, bot_dir, tmp_path):
    data = str(bot_dir.root)
    gen = identity.load(bot_dir).generation
    ok = plugin("start", "--oneshot", "--data-dir", data)
    assert ok.returncode == 0, ok.stderr
    assert ok.stderr.count("\n") == 1 and "renewed:" in ok.stderr and ok.stdout == ""
    assert identity.load(bot_dir).generation == gen + 1
    missing = plugin("start", "--oneshot", "--data-dir", str(tmp_path / "nobody"))
    assert missing.returncode == errors.NOT_LOGGED_IN and missing.stderr.count("\n") == 1
    bad = plugin("start", "--oneshot", "--data-dir", data, "--renewal-interval", "soon")
    assert bad.returncode == errors.USAGE and bad.stderr.count("\n") == 1
    static = plugin("start", "--oneshot", "--data-dir", data, "--static")
    assert static.returncode == errors.USAGE
    devcluster.stop()
    away = plugin("start", "--oneshot", "--data-dir", data, timeout=90)
    assert away.returncode == errors.UNAVAILABLE
    assert away.stderr.count("\n") == 1 and "Traceback" not in away.stderr
    assert identity.load(bot_dir).generation == gen + 1


def test_oneshot_renews_certs_due_within_one_interval(devcluster, bot_dir):
    entry = bot_dir.read_entry(KUBE_CLUSTER)
    set_renew_at(bot_dir, KUBE_CLUSTER, time.time() + 3000)  # due in 50 min: after one 20 min interval
    before = devcluster.stats()["kube_certs_issued"]
    assert plugin("start", "--oneshot", "--data-dir", str(bot_dir.root)).returncode == 0
    assert devcluster.stats()["kube_certs_issued"] == before
    set_renew_at(bot_dir, KUBE_CLUSTER, time.time() + 600)  # due in 10 min: before the next run
    assert plugin("start", "--oneshot", "--data-dir", str(bot_dir.root)).returncode == 0
    assert devcluster.stats()["kube_certs_issued"] == before + 1
    assert bot_dir.read_entry(KUBE_CLUSTER).status != entry.status


# systemd unit -------------------------------------------------------------------------------------------------

def test_systemd_unit(bot_dir, tmp_path):
    out = plugin("systemd-unit", "--data-dir", str(bot_dir.root), "--user", "kt-bot")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    lines = set(text.splitlines())
    exe = str(bin_path("kubectl-teleport"))
    for line in (f"ExecStart={exe} start --data-dir {bot_dir.root}", "ExecReload=/bin/kill -HUP $MAINPID",
                 "Restart=on-failure", "User=kt-bot", "ProtectSystem=strict", "ProtectHome=read-only",
                 f"ReadWritePaths={bot_dir.root}", "NoNewPrivileges=yes", "PrivateTmp=yes", "UMask=0077",
                 "MemoryDenyWriteExecute=yes", "After=network-online.target", "Wants=network-online.target",
                 "WantedBy=multi-user.target"):
        assert line in lines, line
    assert Path(exe).is_absolute()
    verify = shutil.which("systemd-analyze")
    if verify is None:
        pytest.skip("systemd-analyze is not installed")
    unit = tmp_path / "kubectl-teleport.service"
    unit.write_text(text)
    res = subprocess.run([verify, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60,
                         check=False, cwd=tmp_path)
    ours = [ln for ln in res.stderr.splitlines() if "kubectl-teleport.service" in ln]
    assert res.returncode == 0 and not ours, res.stderr


def test_systemd_unit_quotes_paths_and_lists_destinations(bot_dir, tmp_path):
    dest = tmp_path / "out dir"
    lock = DataDir(bot_dir.root)
    cfg = lock.load_config()
    cfg.destinations.append({"path": str(dest), "static": False, "default": KUBE_CLUSTER})
    lock.save_config(cfg)
    text = systemd.unit_text(str(bot_dir.root), "kt-bot")
    assert f'ReadWritePaths={bot_dir.root} "{dest}"' in text.splitlines()
    assert systemd.quote("/a b/%h$x") == '"/a b/%%h$$x"'
