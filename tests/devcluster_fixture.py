"""pytest plugin: a real devcluster process per test (`devcluster`) or several (`devcluster_factory`).

The server runs as `python -m kubectl_teleport.devcluster start` with free ports and a ready file; the fixture
polls the ready file (bounded), and on teardown sends SIGTERM and asserts a clean exit.
"""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

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



# Helpers for talking to a devcluster's Teleport side as a client would ---------------------------------------

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
    """The host CA from the ready file, checked against its pin."""
    from kubectl_teleport import pki

    assert pki.spki_pin(pki.load_cert(dc.host_ca_pem)) == dc.ca_pin
    return dc.host_ca_pem


def _new_key(dc: DevCluster) -> tuple[Any, bytes, bytes]:
    """A key of the cluster's suite: (private key, TLS public key PEM as Teleport takes it, SSH line)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    legacy = dc.suite == "legacy"
    key = rsa.generate_private_key(65537, 2048) if legacy else ec.generate_private_key(ec.SECP256R1())
    pub = key.public_key()
    tls = pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1 if legacy
                           else serialization.PublicFormat.SubjectPublicKeyInfo)
    ssh = pub.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH) + b"\n"
    return key, tls, ssh


def join_bot(dc: DevCluster, tmp_dir: Path, name: str = "robot", roles: str = "machine-id-kube-role"
             ) -> BotIdentity:
    """`bots add` + a Teleport join (POST /webapi/host/credentials on the proxy): the generation-1 identity."""
    from kubectl_teleport import pki

    token = dc.add_bot(name, roles)["token"]
    key, tls, ssh = _new_key(dc)
    expires = datetime.now(timezone.utc) + timedelta(hours=1)
    body = {"token": token, "role": "Bot", "public_tls_key": base64.b64encode(tls).decode(),
            "public_ssh_key": base64.b64encode(ssh).decode(), "expires": expires.strftime("%Y-%m-%dT%H:%M:%SZ")}
    with httpx.Client(base_url=f"https://{dc.teleport_proxy}", timeout=15,
                      verify=ssl.create_default_context(cafile=dc.web_ca_file)) as c:
        resp = c.post("/webapi/host/credentials", json=body)
    assert resp.status_code == 200, resp.text
    return BotIdentity(base64.b64decode(resp.json()["tls"]).decode(), pki.private_key_pem(key), 1)


def kube_credentials(dc: DevCluster, tmp_dir: Path, ident: BotIdentity, kube_cluster: str = "example-k8s-cluster",
                     role: str = "machine-id-kube-role") -> tuple[str, str, Any]:
    """GenerateUserCerts (role impersonation, a fresh key) on the auth service: (cert PEM, key PEM, the answer)."""
    import grpc
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    from kubectl_teleport import pki
    from kubectl_teleport.proto import teleport_auth_pb2 as pb

    key, tls, ssh = _new_key(dc)
    keys = {"public_key": ssh} if int(dc.teleport_version.split(".")[0]) < 17 else \
        {"ssh_public_key": ssh, "tls_public_key": tls}
    user = x509.load_pem_x509_certificate(ident.cert_pem.encode()).subject.get_attributes_for_oid(
        NameOID.COMMON_NAME)[0].value
    req = pb.UserCertsRequest(username=user, role_requests=[role], use_role_requests=True,
                              route_to_cluster=dc.cluster_name, kubernetes_cluster=kube_cluster, **keys)
    req.expires.FromDatetime(datetime.now(timezone.utc) + timedelta(minutes=30))
    creds = grpc.ssl_channel_credentials(dc.host_ca_pem.encode(), ident.key_pem.encode(), ident.cert_pem.encode())
    sni = dc.cluster_name.encode().hex() + ".teleport.cluster.local"
    with grpc.secure_channel(dc.auth_server, creds, options=[("grpc.ssl_target_name_override", sni)]) as ch:
        certs = ch.unary_unary("/proto.AuthService/GenerateUserCerts",
                               request_serializer=pb.UserCertsRequest.SerializeToString,
                               response_deserializer=pb.Certs.FromString)(req, timeout=15)
    return certs.tls.decode(), pki.private_key_pem(key), certs
