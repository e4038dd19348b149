"""Issuer faults between the installed plugin and a devcluster (tests/faultproxy.py).

For each fault: with a valid cached certificate `credentials` serves it with exactly one warning line; with
an expired one it fails with one clear line and the documented exit code, within the bounded `--timeout`;
never a traceback. Retries only for requests that are safe to repeat (join is never retried).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness.faults import TcpFaultProxy, TlsFaultServer, closed_port
from kubectl_teleport import errors
from kubectl_teleport.store import files as fsutil
from tests.plugin_helpers import KUBE_CLUSTER, cert_of, credentials, login, make_due, plugin

TIMEOUT = 1.0
WALL_BOUND = TIMEOUT + 4.0  # the deadline, plus interpreter start-up and imports on a slow 2-core runner


def set_proxy(data: Path, address: str) -> None:
    """Point the identity at another address (the fault), as if the proxy had moved."""
    cfg = json.loads((data / "config.json").read_bytes())
    cfg["proxy"] = address
    fsutil.atomic_write(data / "config.json", json.dumps(cfg).encode())


@contextlib.contextmanager
def refused(_dc) -> Iterator[str]:
    yield closed_port()


def tcp(mode: str) -> Callable:
    @contextlib.contextmanager
    def make(dc) -> Iterator[str]:
        with TcpFaultProxy(dc.proxy, mode, drip_interval=0.05) as proxy:
            yield proxy.address
    return make


def tls(fault: str, **kw) -> Callable:
    @contextlib.contextmanager
    def make(dc) -> Iterator[str]:
        with TlsFaultServer({"*": fault}, state_dir=dc.state_dir, **kw) as server:
            yield server.address
    return make


FAULTS = {
    "connection-refused": (refused, errors.UNAVAILABLE),
    "accept-and-hang": (tcp("hang"), errors.UNAVAILABLE),
    "slow-bytes": (tcp("drip"), errors.UNAVAILABLE),
    "reset-mid-response": (tls("reset"), errors.UNAVAILABLE),
    "http-503": (tls("status:503"), errors.UNAVAILABLE),
    "http-500": (tls("status:500"), errors.UNAVAILABLE),
    "non-json-body": (tls("nonjson"), errors.UNAVAILABLE),
    "huge-body": (tls("huge"), errors.UNAVAILABLE),
    "wrong-json-types": (tls('json:{"tls_cert": 42, "expires": []}'), errors.UNAVAILABLE),
    "json-array": (tls("json:[1, 2, 3]"), errors.UNAVAILABLE),
    "server-hangs-after-request": (tls("hang"), errors.UNAVAILABLE),
    "certificate-of-another-ca": (tls("status:500", other_ca=True), errors.TRUST),
}


def _one_line(stderr: str) -> str:
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.mark.parametrize("name", list(FAULTS))
def test_fault(devcluster, tmp_path, name):
    factory, expired_code = FAULTS[name]
    data = tmp_path / "bot"
    login(devcluster, data)
    cached = cert_of(credentials(data).stdout)
    with factory(devcluster) as address:
        set_proxy(data, address)
        make_due(data)
        start = time.monotonic()
        served = plugin(
            "credentials", "--data-dir", str(data), "--kube-cluster", KUBE_CLUSTER, "--timeout", str(TIMEOUT),
            env={"KUBERNETES_EXEC_INFO": ""})
        took = time.monotonic() - start
        assert served.returncode == 0, served.stderr
        assert cert_of(served.stdout) == cached
        line = _one_line(served.stderr)
        assert line.startswith("kubectl-teleport: warning: ") and "serving the cached certificate" in line
        assert took < WALL_BOUND, took

        make_due(data, expired=True)
        start = time.monotonic()
        failed = plugin("credentials", "--data-dir", str(data), "--kube-cluster", KUBE_CLUSTER,
                        "--timeout", str(TIMEOUT))
        took = time.monotonic() - start
    assert failed.returncode == expired_code, failed.stderr
    assert failed.stdout == ""
    line = _one_line(failed.stderr)
    assert line.startswith("kubectl-teleport: error: ") and "BEGIN" not in line
    assert took < WALL_BOUND, took
    # nothing was damaged: the old (expired) entry is still there, no temp or pending files are left
    assert not list(data.rglob(".*.tmp")) and not (data / "identity.pending.json").exists()


def test_huge_body_is_not_read_whole(devcluster, tmp_path):
    """The client stops at api.MAX_RESPONSE: the 8 MiB answer is refused quickly with its own message."""
    data = tmp_path / "bot"
    login(devcluster, data)
    with TlsFaultServer({"*": "huge"}, state_dir=devcluster.state_dir) as server:
        set_proxy(data, server.address)
        make_due(data, expired=True)
        out = plugin("credentials", "--data-dir", str(data), "--kube-cluster", KUBE_CLUSTER, "--timeout", "10")
    assert out.returncode == errors.UNAVAILABLE
    assert "larger than 1048576 bytes" in _one_line(out.stderr)
    assert server.requests["POST /v1/kube/certs"] == 1  # an oversized answer is not retried


def test_5xx_on_an_idempotent_request_is_retried_with_backoff(devcluster, tmp_path):
    data = tmp_path / "bot"
    login(devcluster, data)
    with TlsFaultServer({"*": "status:503"}, state_dir=devcluster.state_dir) as server:
        set_proxy(data, server.address)
        make_due(data, expired=True)
        start = time.monotonic()
        out = plugin("credentials", "--data-dir", str(data), "--kube-cluster", KUBE_CLUSTER, "--timeout", "10")
        took = time.monotonic() - start
    assert out.returncode == errors.UNAVAILABLE
    attempts = server.requests["POST /v1/kube/certs"]
    assert 2 <= attempts <= 4, attempts  # retried, bounded
    assert took > 0.2 * 0.5 + 0.4 * 0.5, took  # backed off between attempts (jittered 50-100% of 0.2, 0.4 s)


def test_4xx_is_not_retried(devcluster, tmp_path):
    data = tmp_path / "bot"
    login(devcluster, data)
    with TlsFaultServer({"*": "status:403"}, state_dir=devcluster.state_dir) as server:
        set_proxy(data, server.address)
        make_due(data, expired=True)
        out = plugin("credentials", "--data-dir", str(data), "--kube-cluster", KUBE_CLUSTER, "--timeout", "10")
    assert out.returncode == errors.UNAVAILABLE and server.requests["POST /v1/kube/certs"] == 1
    _one_line(out.stderr)


def test_join_is_never_retried_and_the_token_is_not_spent(devcluster, tmp_path):
    bot = devcluster.add_bot()
    faults = {"GET /v1/cluster/ca": "forward", "GET /v1/ping": "forward", "POST /v1/join": "status:503"}
    with TlsFaultServer(faults, state_dir=devcluster.state_dir, upstream=devcluster.proxy) as server:
        out = plugin("login", "--proxy", server.address, "--token", bot["token"], "--ca-pin", bot["ca_pins"][0],
                     "--kube-cluster", KUBE_CLUSTER, "--data-dir", str(tmp_path / "bot"), "--timeout", "10")
    assert out.returncode == errors.UNAVAILABLE, out.stderr
    assert server.requests["POST /v1/join"] == 1  # a 5xx on join is not retried: the token may be consumed
    assert server.requests["GET /v1/cluster/ca"] == 1
    line = _one_line(out.stderr)
    assert bot["token"] not in line + out.stdout
    assert devcluster.stats()["joins"] == 0
    login(devcluster, tmp_path / "bot", bot=bot)  # the token never reached the server: it still works


def test_faults_during_login_are_bounded(devcluster, tmp_path):
    bot = devcluster.add_bot()
    with TcpFaultProxy(devcluster.proxy, "hang") as proxy:
        start = time.monotonic()
        out = plugin("login", "--proxy", proxy.address, "--token", bot["token"], "--ca-pin", bot["ca_pins"][0],
                     "--kube-cluster", KUBE_CLUSTER, "--data-dir", str(tmp_path / "bot"), "--timeout", str(TIMEOUT))
        took = time.monotonic() - start
    assert out.returncode == errors.UNAVAILABLE and took < WALL_BOUND
    assert bot["token"] not in _one_line(out.stderr)
    assert not (tmp_path / "bot" / "identity.pem").exists()
