"""A due certificate with an issuer that accepts and never answers: kubectl must not wait for it while a valid
certificate is cached (the renewal gets policy.DUE_BUDGET seconds of network), and says so in one line."""

from __future__ import annotations

import time

from harness.faults import TcpFaultProxy
from kubectl_teleport import clock, policy
from kubectl_teleport.commands import credentials
from kubectl_teleport.store import identity
from kubectl_teleport.store.datadir import DataDir
from tests.e2e.test_faults import set_proxy
from tests.plugin_helpers import EXEC_INFO_V1, KUBE_CLUSTER, cert_of, login, make_due, plugin

CALL_BOUND = 2.5  # what one kubectl call may cost with a hanging issuer (interpreter and imports included)


def test_due_certificate_with_hanging_issuer_returns_quickly(devcluster, tmp_path):
    data = tmp_path / "bot"
    login(devcluster, data)
    cached = cert_of(plugin("credentials", "--data-dir", str(data), "--kube-cluster", KUBE_CLUSTER).stdout)
    with TcpFaultProxy(devcluster.teleport_proxy, "hang") as proxy:
        set_proxy(data, proxy.address)
        for _ in range(3):
            make_due(data)
            start = time.monotonic()
            out = plugin("credentials", "--data-dir", str(data), "--kube-cluster", KUBE_CLUSTER,
                         env={"KUBERNETES_EXEC_INFO": EXEC_INFO_V1})  # default --timeout: 15 s
            took = time.monotonic() - start
            assert out.returncode == 0, out.stderr
            assert cert_of(out.stdout) == cached
            lines = out.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("kubectl-teleport: warning: "), out.stderr
            assert "serving the cached certificate" in lines[0] and "did not answer in time" in lines[0]
            assert took < CALL_BOUND, took


def test_nothing_valid_cached_waits_the_full_timeout(devcluster, tmp_path):
    data = tmp_path / "bot"
    login(devcluster, data)
    with TcpFaultProxy(devcluster.teleport_proxy, "hang") as proxy:
        set_proxy(data, proxy.address)
        make_due(data, expired=True)
        start = time.monotonic()
        out = plugin("credentials", "--data-dir", str(data), "--kube-cluster", KUBE_CLUSTER, "--timeout", "3")
        took = time.monotonic() - start
    assert out.returncode == 6 and out.stdout == ""
    assert 3 <= took < 3 + CALL_BOUND, took  # the full --timeout, not the short budget


def test_due_identity_and_due_certificate_give_one_warning_line(devcluster, tmp_path, monkeypatch, capsys):
    data = tmp_path / "bot"
    login(devcluster, data)
    dd = DataDir(data)
    monkeypatch.setenv("KUBERNETES_EXEC_INFO", EXEC_INFO_V1)
    ident = identity.load(dd)
    entry = dd.read_entry(KUBE_CLUSTER)
    now = ident.renew_at() + 1  # identity due, certificate (1 h) due and still valid
    assert entry.renew_at < now < entry.expires_at
    monkeypatch.setattr(clock, "now", lambda: now)
    with TcpFaultProxy(devcluster.teleport_proxy, "hang") as proxy:
        set_proxy(data, proxy.address)
        capsys.readouterr()
        start = time.monotonic()
        out = credentials.credentials(str(data), KUBE_CLUSTER)
        took = time.monotonic() - start
    assert entry.status in out
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bot identity" in err[0] and "serving the cached certificate" in err[0], err
    assert took < policy.DUE_BUDGET + 1.0, took
    assert identity.load(dd).generation == ident.generation  # nothing committed


def test_the_daemon_still_gets_the_full_timeout(devcluster, tmp_path):
    """`start --oneshot` is not kubectl: it waits for the issuer up to --timeout, then fails with exit 6."""
    data = tmp_path / "bot"
    login(devcluster, data)
    with TcpFaultProxy(devcluster.teleport_proxy, "hang") as proxy:
        set_proxy(data, proxy.address)
        start = time.monotonic()
        out = plugin("start", "--oneshot", "--data-dir", str(data), timeout=60)
        took = time.monotonic() - start
    assert out.returncode == 6, out.stderr
    assert took > policy.DUE_BUDGET + 1, took
