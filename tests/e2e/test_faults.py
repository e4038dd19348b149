"""Issuer faults between the installed plugin and a devcluster (harness/faults.py, harness/grpc_faults.py).

For each fault on the auth service's gRPC route: with a valid cached certificate `credentials` serves it with
exactly one warning line; with an expired one it fails with one clear line and the documented exit code, within
the bounded `--timeout`; never a traceback. Idempotent calls (a Kubernetes certificate) are retried on transient
failures; the join is never retried.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness.faults import TcpFaultProxy, TlsFaultServer, closed_port
from harness.grpc_faults import GrpcFaultServer
from kubectl_teleport import errors
from kubectl_teleport.store import files as fsutil
from tests.plugin_helpers import KUBE_CLUSTER, cert_of, credentials, join_args, login, make_due, plugin, web_trust

TIMEOUT = 1.0
WALL_BOUND = TIMEOUT + 4.0  # the deadline, plus interpreter start-up and imports on a slow 2-core runner
GENERATE = "/proto.AuthService/GenerateUserCerts"


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
        with TcpFaultProxy(dc.teleport_proxy, mode, drip_interval=0.05) as proxy:
            yield proxy.address
    return make


def grpc(fault: str, **kw) -> Callable:
    @contextlib.contextmanager
    def make(dc) -> Iterator[str]:
        with GrpcFaultServer(fault, state_dir=dc.state_dir, **kw) as server:
            yield server.address
    return make


FAULTS = {
    "connection-refused": (refused, errors.UNAVAILABLE),
    "accept-and-hang": (tcp("hang"), errors.UNAVAILABLE),
    "slow-bytes": (tcp("drip"), errors.UNAVAILABLE),
    "reset-mid-response": (grpc("reset"), errors.UNAVAILABLE),
    "grpc-unavailable": (grpc("unavailable"), errors.UNAVAILABLE),
    "grpc-internal": (grpc("internal"), errors.UNAVAILABLE),
    "http-503": (grpc("http-503"), errors.UNAVAILABLE),
    "not-grpc": (grpc("not-grpc"), errors.UNAVAILABLE),
    "rst-stream": (grpc("rst"), errors.UNAVAILABLE),
    "goaway": (grpc("goaway"), errors.UNAVAILABLE),
    "huge-message": (grpc("huge"), errors.UNAVAILABLE),
    "garbage-message": (grpc("garbage"), errors.UNAVAILABLE),
    "server-hangs-after-request": (grpc("hang"), errors.UNAVAILABLE),
    "no-http2": (grpc("no-h2"), errors.UNAVAILABLE),
    "certificate-of-another-ca": (grpc("unavailable", other_ca=True), errors.TRUST),
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


def test_huge_message_is_not_read_whole(devcluster, tmp_path):
    """The client stops at 1 MiB: the 8 MiB answer is refused at its length prefix, and not retried."""
    data = tmp_path / "bot"
    login(devcluster, data)
    with GrpcFaultServer("huge", state_dir=devcluster.state_dir) as server:
        set_proxy(data, server.address)
        make_due(data, expired=True)
        out = plugin("credentials", "--data-dir", str(data), "--kube-cluster", KUBE_CLUSTER, "--timeout", "10")
    assert out.returncode == errors.UNAVAILABLE
    assert "more than the limit of 1048576" in _one_line(out.stderr)
    assert server.calls[GENERATE] == 1


def test_unavailable_on_an_idempotent_request_is_retried_with_backoff(devcluster, tmp_path):
    data = tmp_path / "bot"
    login(devcluster, data)
    with GrpcFaultServer("unavailable", state_dir=devcluster.state_dir) as server:
        set_proxy(data, server.address)
        make_due(data, expired=True)
        start = time.monotonic()
        out = plugin("credentials", "--data-dir", str(data), "--kube-cluster", KUBE_CLUSTER, "--timeout", "10")
        took = time.monotonic() - start
    assert out.returncode == errors.UNAVAILABLE
    attempts = server.calls[GENERATE]
    assert 2 <= attempts <= 4, attempts  # retried, bounded
    assert took > 0.2 * 0.5 + 0.4 * 0.5, took  # backed off between attempts (jittered 50-100% of 0.2, 0.4 s)


def test_a_refusal_is_not_retried(devcluster, tmp_path):
    data = tmp_path / "bot"
    login(devcluster, data)
    with GrpcFaultServer("permission-denied", state_dir=devcluster.state_dir) as server:
        set_proxy(data, server.address)
        make_due(data, expired=True)
        out = plugin("credentials", "--data-dir", str(data), "--kube-cluster", KUBE_CLUSTER, "--timeout", "10")
    assert out.returncode == errors.ACCESS_DENIED and server.calls[GENERATE] == 1
    _one_line(out.stderr)


def test_join_is_never_retried_and_the_token_is_not_spent(devcluster, tmp_path):
    """A web API answering the join with 503 (discovery answered like the devcluster's, the auth service reached
    at its own address for the pin check): one POST, no /v1 retry, the token still works afterwards."""
    bot = devcluster.add_bot()
    find = {"cluster_name": devcluster.cluster_name, "server_version": "17.5.0",
            "auth": {"signature_algorithm_suite": "balanced-v1"}, "proxy": {"tls_routing_enabled": True}}
    faults = {"GET /webapi/find": "json:" + json.dumps(find), "POST /webapi/host/credentials": "status:503"}
    trust = tmp_path / "host-ca.pem"
    trust.write_text(devcluster.host_ca_pem)
    with TlsFaultServer(faults, state_dir=devcluster.state_dir) as server:
        args = join_args(bot)
        args[args.index("--proxy") + 1] = server.address
        out = plugin("login", *args, "--auth-server", devcluster.auth_server, "--kube-cluster", KUBE_CLUSTER,
                     "--data-dir", str(tmp_path / "bot"), "--timeout", "10", env={"SSL_CERT_FILE": str(trust)})
    assert out.returncode == errors.UNAVAILABLE, out.stderr
    assert server.requests["POST /webapi/host/credentials"] == 1  # not retried: the token may be consumed
    assert server.requests["POST /v1/webapi/host/credentials"] == 0  # only a 404 tries the /v1 path
    line = _one_line(out.stderr)
    assert bot["token"] not in line + out.stdout and "may have been used" in line
    assert devcluster.stats()["joins"] == 0
    login(devcluster, tmp_path / "bot", bot=bot)  # the token never reached the server: it still works


def test_faults_during_login_are_bounded(devcluster, tmp_path):
    bot = devcluster.add_bot()
    with TcpFaultProxy(devcluster.teleport_proxy, "hang") as proxy:
        args = join_args(bot)
        args[args.index("--proxy") + 1] = proxy.address
        start = time.monotonic()
        out = plugin("login", *args, "--kube-cluster", KUBE_CLUSTER, "--data-dir", str(tmp_path / "bot"),
                     "--timeout", str(TIMEOUT), env=web_trust(devcluster))
        took = time.monotonic() - start
    assert out.returncode == errors.UNAVAILABLE and took < WALL_BOUND
    assert bot["token"] not in _one_line(out.stderr)
    assert not (tmp_path / "bot" / "identity.pem").exists()
