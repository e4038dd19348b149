"""pytest plugin: a real devcluster process per test (`devcluster`) or several (`devcluster_factory`).

The server runs as `python -m kubectl_teleport.devcluster start` with free ports and a ready file; the fixture
polls the ready file (bounded), and on teardown sends SIGTERM and asserts a clean exit.
"""

from __future__ import annotations

import os
import ssl
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from harness.devcluster import (  # noqa: F401 (re-exported for the tests)
    DevCluster,
    DevClusterError,
    devcluster_cmd,
    devcluster_env,
    start_devcluster,
)


def _stop_all(clusters: list[DevCluster]) -> None:
    errors = []
    for dc in clusters:
        try:
            dc.stop()
        except DevClusterError as e:
            errors.append(str(e))
    assert not errors, errors


@pytest.fixture
def devcluster(tmp_path: Path) -> Iterator[DevCluster]:
    """A seeded devcluster on free ports, stopped with SIGTERM (asserting exit 0) after the test."""
    dc = start_devcluster(tmp_path / "devcluster")
    yield dc
    _stop_all([dc])


@pytest.fixture
def devcluster_factory(tmp_path: Path) -> Iterator[Callable[..., DevCluster]]:
    """Start more devclusters: `factory(*extra_start_args, seed=True)`; all stopped after the test."""
    started: list[DevCluster] = []

    def factory(*extra: str, seed: bool = True) -> DevCluster:
        dc = start_devcluster(tmp_path / f"devcluster-{len(started)}", *extra, seed=seed)
        started.append(dc)
        return dc

    yield factory
    _stop_all(started)



# HTTP helpers for talking to a devcluster as a client would ----------------------------------------------------

def fetch_host_ca_pems(address: str) -> list[str]:
    """GET /v1/cluster/ca without verifying TLS (as `login` does before checking the pin)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with httpx.Client(verify=ctx, timeout=10) as c:
        resp = c.get(f"https://{address}/v1/cluster/ca")
    resp.raise_for_status()
    return resp.json()["ca_pems"]


def tls_client(base_url: str, ca_pem: str, tmp_dir: Path, cert_pem: str | None = None,
               key_pem: str | None = None) -> httpx.Client:
    """An httpx client verifying the server against `ca_pem`, presenting `cert_pem`/`key_pem` if given."""
    ctx = ssl.create_default_context(cadata=ca_pem)
    if cert_pem is not None and key_pem is not None:
        tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=tmp_dir, suffix=".pem")
        with os.fdopen(fd, "w") as f:
            f.write(cert_pem + key_pem)
        ctx.load_cert_chain(name)
    return httpx.Client(base_url=base_url, verify=ctx, timeout=15)


@dataclass
class BotIdentity:
    """A bot's identity certificate and private key (PEM)."""

    cert_pem: str
    key_pem: str
    generation: int


def host_ca_pem(dc: DevCluster) -> str:
    """The host CA, fetched unverified and checked against the ready file's pin."""
    from kubectl_teleport import pki

    [pem] = fetch_host_ca_pems(dc.proxy)
    assert pki.spki_pin(pki.load_cert(pem)) == dc.ca_pin
    return pem


def api_client(dc: DevCluster, tmp_dir: Path, ident: BotIdentity | None = None) -> httpx.Client:
    """A client of the auth API verifying the host CA, presenting `ident` if given."""
    return tls_client(f"https://{dc.proxy}", host_ca_pem(dc), tmp_dir, *((ident.cert_pem, ident.key_pem)
                                                                         if ident else ()))


def join_bot(dc: DevCluster, tmp_dir: Path, name: str = "robot", roles: str = "machine-id-kube-role",
             ttl_seconds: int | None = None) -> BotIdentity:
    """`bots add` + POST /v1/join with a fresh key: the bot's generation-1 identity."""
    from kubectl_teleport import pki

    token = dc.add_bot(name, roles)["token"]
    key = pki.generate_key()
    body = {"token": token, "role": "Bot", "join_method": "token", "public_tls_key": pki.public_key_pem(key)}
    if ttl_seconds is not None:
        body["ttl_seconds"] = ttl_seconds
    with api_client(dc, tmp_dir) as c:
        resp = c.post("/v1/join", json=body)
    assert resp.status_code == 200, resp.text
    return BotIdentity(resp.json()["tls_cert"], pki.private_key_pem(key), resp.json()["generation"])


def kube_credentials(dc: DevCluster, tmp_dir: Path, ident: BotIdentity,
                     kube_cluster: str = "example-k8s-cluster", **extra: object) -> tuple[str, str, dict]:
    """POST /v1/kube/certs with a fresh key: (cert PEM, key PEM, the whole answer)."""
    from kubectl_teleport import pki

    key = pki.generate_key()
    with api_client(dc, tmp_dir, ident) as c:
        resp = c.post("/v1/kube/certs", json={"public_tls_key": pki.public_key_pem(key),
                                              "kubernetes_cluster": kube_cluster, **extra})
    assert resp.status_code == 200, resp.text
    return resp.json()["tls_cert"], pki.private_key_pem(key), resp.json()
