"""The installed plugin against the devcluster standing in for each Teleport it supports (16/legacy, 17/legacy,
17/balanced-v1, 18/balanced-v1), end to end: login (key algorithm of the suite), the real kubectl and the Python
client through the plugin, a Kubernetes certificate renewed, the identity renewed by `start --oneshot`
(generation 2), what `status` reports, logout. And a proxy without TLS routing, reached with --auth-server."""

from __future__ import annotations

import json
import time

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from kubectl_teleport import errors, pki
from kubectl_teleport.store import identity
from kubectl_teleport.store.datadir import DataDir
from tests.plugin_helpers import (
    KUBE_CLUSTER,
    cert_of,
    credentials,
    join_args,
    kubectl_run,
    login,
    make_due,
    plugin,
    web_trust,
)

MODES = [("16", "legacy"), ("17", "legacy"), ("17", "balanced-v1"), ("18", "balanced-v1")]


@pytest.mark.parametrize(("version", "suite"), MODES, ids=[f"{v}-{s}" for v, s in MODES])
def test_every_teleport_mode_end_to_end(devcluster_factory, kubectl, tmp_path, version, suite):
    dc = devcluster_factory("--teleport-version", version, *(["--suite", suite] if version != "16" else []))
    data = tmp_path / "bot"
    out = login(dc, data)
    assert f"(Teleport {version}." in out.stdout
    ident = identity.load(DataDir(data))
    key = pki.load_private_key(ident.key_pem)
    assert isinstance(key, rsa.RSAPrivateKey if suite == "legacy" else ec.EllipticCurvePrivateKey)
    assert ident.generation == 1 and ident.ssh_cert

    kubeconfig = data / "kubeconfig.yaml"
    pods = kubectl_run(kubectl, kubeconfig, tmp_path, "get", "pods", "-n", "demo", "-o", "name")
    assert pods.returncode == 0 and pods.stdout.startswith("pod/"), pods.stderr
    from kubernetes import client, config

    api = client.CoreV1Api(config.new_client_from_config(config_file=str(kubeconfig)))
    assert {p.metadata.namespace for p in api.list_namespaced_pod("demo").items} == {"demo"}

    first = cert_of(credentials(data).stdout)
    make_due(data)
    assert cert_of(credentials(data).stdout) != first  # a new Kubernetes certificate
    oneshot = plugin("start", "--oneshot", "--data-dir", str(data))
    assert oneshot.returncode == 0, oneshot.stderr
    assert identity.load(DataDir(data)).generation == 2
    stats = dc.stats()
    assert stats["identity_renewals"] == 1 and stats["kube_certs_issued"] >= 2, stats

    report = json.loads(plugin("status", "--data-dir", str(data), "-o", "json").stdout)
    assert report["teleport"]["server_version"].startswith(f"{version}.")
    assert report["teleport"]["signature_algorithm_suite"] == ("" if version == "16" else suite)
    assert report["identity"]["generation"] == 2 and report["identity"]["renewal_in_doubt"] is None
    whoami = kubectl_run(kubectl, kubeconfig, tmp_path, "auth", "whoami", "-o", "json")
    assert json.loads(whoami.stdout)["status"]["userInfo"]["username"] == "alice", whoami.stderr

    assert plugin("logout", "--data-dir", str(data)).returncode == 0
    assert sorted(p.name for p in data.iterdir()) == ["lock"]


def test_a_proxy_without_tls_routing_needs_the_auth_server(devcluster_factory, kubectl, tmp_path):
    dc = devcluster_factory("--no-tls-routing")
    bot = dc.add_bot()
    data = tmp_path / "bot"
    base = [*join_args(bot), "--kube-cluster", KUBE_CLUSTER, "--data-dir", str(data)]
    refused = plugin("login", *base, env=web_trust(dc))
    assert refused.returncode == errors.UNAVAILABLE and "--auth-server" in refused.stderr, refused.stderr
    assert bot["token"] not in refused.stderr and dc.stats()["joins"] == 0  # found out before the token left
    out = plugin("login", *base, "--auth-server", dc.auth_server, env=web_trust(dc))
    assert out.returncode == 0, out.stderr
    cluster = json.loads((data / "config.json").read_text())
    assert cluster["tls_routing"] is False and cluster["auth_server"] == dc.auth_server
    pods = kubectl_run(kubectl, data / "kubeconfig.yaml", tmp_path, "get", "pods", "-n", "demo", "-o", "name")
    assert pods.returncode == 0, pods.stderr
    make_due(data)
    assert credentials(data).returncode == 0  # renewed straight from the auth server


def test_a_hundred_callers_with_the_identity_due_renew_it_once(devcluster, tmp_path):
    """100 kubectl calls at once, the cached certificate expired and the identity due (the plugin's clock shifted
    into its renewal window): one identity renewal, one Kubernetes certificate, the same bytes for all."""
    import os
    import subprocess
    from concurrent.futures import ThreadPoolExecutor

    from harness.soak import EXEC_INFO, command

    data = tmp_path / "bot"
    login(devcluster, data)
    ident = identity.load(DataDir(data))
    offset = ident.renew_at() - time.time() + 5
    make_due(data, expired=True)
    before = devcluster.stats()
    env = {**os.environ, "KUBERNETES_EXEC_INFO": EXEC_INFO}

    def call(_: int) -> subprocess.CompletedProcess:
        return subprocess.run(command("credentials", data, offset), capture_output=True, text=True, env=env,
                              timeout=120, check=False)

    with ThreadPoolExecutor(100) as pool:
        results = list(pool.map(call, range(100)))
    assert [r.returncode for r in results] == [0] * 100, [r.stderr for r in results if r.returncode][:3]
    assert len({json.loads(r.stdout)["status"]["clientCertificateData"] for r in results}) == 1
    after = devcluster.stats()
    assert after["identity_renewals"] == before["identity_renewals"] + 1
    assert after["kube_certs_issued"] == before["kube_certs_issued"] + 1
    assert identity.load(DataDir(data)).generation == ident.generation + 1
