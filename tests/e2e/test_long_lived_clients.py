"""Long-lived clients across renewals of 1 minute certificates: a client-go process (`kubectl proxy`, the pinned
kubectl 1.37.1) and the Python `kubernetes` client, each making a request every 2 s for about 136 s (two and a
half certificate lifetimes), sharing one data dir as programs on one machine do.

client-go runs the plugin again whenever the ExecCredential's `expirationTimestamp` has passed, and closes its
connections when the certificate changes; so a cached, usable certificate for every lifetime the server grants
(policy.timing) gives a long-lived client-go program zero failed requests.

The Python client (kubernetes 37.0.2, read in `config/kube_config.py` and `config/exec_provider.py`) runs the
exec plugin once, when the ApiClient is built (`KubeConfigLoader._load_from_exec_plugin`): it writes
`clientCertificateData`/`clientKeyData` to temp files for urllib3 and records `expirationTimestamp` as
`self.expiry`, but the only refresh hook (`refresh_api_key_hook` in `_set_config`) is installed for *token*
credentials. A client certificate is never refreshed: once its NotAfter passes the server answers 401 to every
request, and no 401 handling re-runs the plugin (`ExecProvider`'s docstring lists "TLS cert support" and
"caching" as missing). (A failing plugin is only logged, leaving a client without credentials.) What a user has
to do, and what this test does, is rebuild the ApiClient from the kubeconfig when a request gets 401 and retry
that request once: the rebuild runs the plugin, which serves the certificate already renewed in the cache (or
renews it). Every request then succeeds; the 401s are exactly one per certificate the client outlived.
"""

from __future__ import annotations

import os
import re
import selectors
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.plugin_helpers import login

WINDOW = 136.0  # seconds of requests: crosses the renewals at ~54 s and ~108 s after login (1 min certificates)
INTERVAL = 2.0  # one request per client every 2 s
LIFETIME = 60  # login --ttl 1m
PODS = "/api/v1/namespaces/demo/pods"
SERVING = re.compile(rb"Starting to serve on 127\.0\.0\.1:(\d+)")


def start_proxy(kubectl: Path, kubeconfig: Path, home: Path, log: Path) -> tuple[subprocess.Popen, int]:
    """`kubectl proxy` on a free loopback port (`--port=0`), waiting (bounded) until it says it serves."""
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    env["HOME"] = str(home)
    with open(log, "wb") as err:
        proc = subprocess.Popen([str(kubectl), "--kubeconfig", str(kubeconfig), "proxy", "--port=0",
                                 "--address=127.0.0.1"], stdout=subprocess.PIPE, stderr=err, env=env)
    assert proc.stdout is not None
    out, deadline = b"", time.monotonic() + 30
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while not (m := SERVING.search(out)):
            left = deadline - time.monotonic()
            if left <= 0 or proc.poll() is not None:
                proc.kill()
                proc.wait()
                pytest.fail(f"kubectl proxy did not start: {out!r} {log.read_text()[-2000:]}")
            if sel.select(left):
                out += os.read(proc.stdout.fileno(), 4096)
    return proc, int(m[1])


class RebuildingClient:
    """The Python client as a user must run it with exec client certificates: rebuild on 401, retry once."""

    def __init__(self, kubeconfig: Path, temp_dir: Path) -> None:
        self.kubeconfig, self.temp_dir = kubeconfig, temp_dir
        self.rebuilds = 0
        self.certs: list[bytes] = []  # every client certificate the client has presented, in order
        self.api = self._build()

    def _build(self):
        from kubernetes import client, config

        cfg = client.Configuration()
        config.load_kube_config(config_file=str(self.kubeconfig), client_configuration=cfg,
                                temp_file_path=str(self.temp_dir))  # key material stays in the test's dir
        assert cfg.cert_file, "the plugin gave the Python client no certificate"
        self.certs.append(Path(cfg.cert_file).read_bytes())
        return client.CoreV1Api(client.ApiClient(cfg))

    def list_pods(self):
        from kubernetes.client.rest import ApiException

        try:
            return self.api.list_namespaced_pod("demo", _request_timeout=10)
        except ApiException as exc:
            if exc.status != 401:
                raise
        self.api.api_client.close()
        self.rebuilds += 1
        self.api = self._build()
        return self.api.list_namespaced_pod("demo", _request_timeout=10)

    def close(self) -> None:
        self.api.api_client.close()


def test_long_lived_clients_see_no_failed_requests_across_renewals(devcluster, kubectl, tmp_path):
    data = tmp_path / "bot"
    login(devcluster, data, "--ttl", "1m")
    kubeconfig = data / "kubeconfig.yaml"
    proxy, port = start_proxy(kubectl, kubeconfig, tmp_path, tmp_path / "proxy.log")
    py = None
    proxy_failures: list[str] = []
    py_failures: list[str] = []
    requests = 0
    try:
        py = RebuildingClient(kubeconfig, tmp_path / "k8s-tmp")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            start = time.monotonic()
            while (elapsed := time.monotonic() - start) < WINDOW:
                try:
                    resp = http.get(PODS)
                    if resp.status_code != 200 or len(resp.json()["items"]) < 3:
                        proxy_failures.append(f"{elapsed:.0f} s: {resp.status_code} {resp.text[:200]}")
                except httpx.HTTPError as exc:
                    proxy_failures.append(f"{elapsed:.0f} s: {type(exc).__name__}: {exc}")
                try:
                    pods = py.list_pods()
                    if len(pods.items) < 3:
                        py_failures.append(f"{elapsed:.0f} s: {len(pods.items)} pods")
                except Exception as exc:  # any failure of the request counts, whatever its kind
                    py_failures.append(f"{elapsed:.0f} s: {type(exc).__name__}: {str(exc)[:200]}")
                requests += 1
                time.sleep(max(0.0, start + requests * INTERVAL - time.monotonic()))
        elapsed = time.monotonic() - start
    finally:
        if py is not None:
            py.close()
        proxy.terminate()
        try:
            proxy.wait(10)
        except subprocess.TimeoutExpired:
            proxy.kill()
            proxy.wait()
    log = (tmp_path / "proxy.log").read_text()[-2000:]
    stats = devcluster.stats()

    assert requests >= WINDOW / INTERVAL - 3  # the clients kept the pace (no request took long)
    assert not proxy_failures, (f"{len(proxy_failures)} of {requests} requests through kubectl proxy failed, "
                                f"first: {proxy_failures[:3]}; issued: {stats['kube_certs_issued']}\n{log}")
    assert not py_failures, f"{len(py_failures)} of {requests} Python client requests failed: {py_failures[:3]}"
    # renewals happened (login's certificate and at least two more), and only when due: a certificate is due
    # after 2/3 of its lifetime, so never more than one issuance per 40 s (no renewal storm)
    assert stats["kube_certs_issued"] >= 3, stats
    assert stats["kube_certs_issued"] <= 1 + elapsed // (LIFETIME * 2 / 3), stats
    # the Python client outlived its certificate (and rebuilt) at least twice, each time getting a new one; the
    # only 401s the server gave were those (client-go never presented an expired certificate)
    assert py.rebuilds >= 2 and len(set(py.certs)) == len(py.certs) == py.rebuilds + 1
    assert stats["kube_unauthorized"] == py.rebuilds, stats
