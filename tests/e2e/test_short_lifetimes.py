"""Short certificate lifetimes end to end: whatever lifetime the server grants (a short `--ttl`, a role's
`max_session_ttl`, a client clock ahead of the server), the certificate is cached, served byte-identical and
usable by the real kubectl without new issuances; a lifetime too short to be useful is refused before the join
token is spent.

Nothing here waits for the clock: every assertion is about the state right after login, well inside the
shortest lifetime (a 1 min certificate is due after 40 s).
"""

from __future__ import annotations

import json
import ssl
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from kubectl_teleport import cache, clock, errors, pki
from kubectl_teleport.errors import IdentityRejected
from kubectl_teleport.store import identity
from kubectl_teleport.store.datadir import IDENTITY, DataDir
from tests.plugin_helpers import KUBE_CLUSTER, credentials, join_args, kubectl_run, login, make_due, plugin, web_trust

SHORT_ROLE = """\
kind: role
version: v5
metadata:
  name: short-kube-role
spec:
  allow:
    kubernetes_labels:
      '*': '*'
    kubernetes_groups: [example]
    kubernetes_users: [alice]
  options:
    max_session_ttl: 1m
"""


def _timestamp(rfc3339: str) -> float:
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


def _granted_lifetime(cert_pem: str) -> float:
    """Seconds from the issuer's "now" (NotBefore is backdated by a minute) to NotAfter."""
    cert = pki.load_cert(cert_pem)
    return (pki.not_after(cert) - pki.not_before(cert)).total_seconds() - 60


def assert_cached_and_usable(dc, data: Path, kubectl: Path, home: Path, *, lifetime: int) -> None:
    """Right after login: the cache entry is fresh, repeated calls serve the same bytes and issue nothing, the
    ExecCredential's expirationTimestamp leaves kubectl most of the lifetime, and kubectl works at no cost."""
    assert dc.stats()["kube_certs_issued"] == 1  # login's certificate, nothing more
    entry = cache.decode(Path(cache.cache_path(str(data), KUBE_CLUSTER)).read_bytes())
    assert entry is not None and entry.fresh(time.time()), "the certificate was cached already due"

    first = credentials(data)
    assert first.returncode == 0 and first.stderr == "", first.stderr
    second = credentials(data)
    assert second.returncode == 0 and second.stderr == "", second.stderr
    assert second.stdout == first.stdout  # byte-identical: served from the cache, not renewed
    assert dc.stats()["kube_certs_issued"] == 1

    status = json.loads(first.stdout)["status"]
    granted = _granted_lifetime(status["clientCertificateData"])
    assert lifetime - 2 <= granted <= lifetime  # the identity's remaining lifetime may trim a second
    left = _timestamp(status["expirationTimestamp"]) - time.time()
    assert granted / 2 < left < granted, f"kubectl is told a {granted:.0f} s certificate expires in {left:.0f} s"

    pods = kubectl_run(kubectl, data / "kubeconfig.yaml", home, "get", "pods", "-n", "demo")
    assert pods.returncode == 0, pods.stderr
    assert "web-" in pods.stdout and "toolbox" in pods.stdout
    assert dc.stats()["kube_certs_issued"] == 1  # kubectl cost no issuance


def test_one_minute_ttl_is_cached_and_usable(devcluster, kubectl, tmp_path):
    data = tmp_path / "bot"
    login(devcluster, data, "--ttl", "1m")
    assert_cached_and_usable(devcluster, data, kubectl, tmp_path, lifetime=60)


def test_role_max_session_ttl_of_one_minute_is_cached_and_usable(devcluster, kubectl, tmp_path):
    role = tmp_path / "short-role.yaml"
    role.write_text(SHORT_ROLE)
    devcluster.admin("create", "-f", str(role))
    bot = devcluster.add_bot("shortbot", "short-kube-role")
    data = tmp_path / "bot"
    login(devcluster, data, "--ttl", "1h", bot=bot)  # asks for an hour, the role grants a minute
    assert_cached_and_usable(devcluster, data, kubectl, tmp_path, lifetime=60)


@pytest.mark.parametrize("offset", ["-5m", "-30s", "30s"])
def test_clock_difference_with_the_server_still_gives_a_cached_usable_certificate(devcluster_factory, kubectl,
                                                                                 tmp_path, offset):
    """`-5m`: the cluster's clock is 5 min behind ours, so a 2 min certificate's NotAfter is already in our
    past; mapped onto our clock it is valid for 2 min. `30s`: the cluster is ahead (within Teleport's 1 min
    backdating of NotBefore, so TLS still verifies)."""
    dc = devcluster_factory(f"--clock-offset={offset}")
    data = tmp_path / "bot"
    login(dc, data, "--ttl", "2m")
    assert_cached_and_usable(dc, data, kubectl, tmp_path, lifetime=120)
    # the 2 min identity is judged on our clock too: neither expired nor due, and `status` says so
    status = plugin("status", "--data-dir", str(data), "-o", "json")
    assert status.returncode == 0, status.stderr
    ident = json.loads(status.stdout)["identity"]
    assert not ident["expired"] and not ident["renewal_due"] and 60 < ident["seconds_left"] <= 120, ident
    # a due certificate is renewed with the current identity: one issuance, no identity renewal, no warning
    make_due(data)
    renewed = credentials(data)
    assert renewed.returncode == 0 and renewed.stderr == "", renewed.stderr
    stats = dc.stats()
    assert stats["kube_certs_issued"] == 2 and stats["identity_renewals"] == 0, stats


def test_too_short_ttl_is_refused_before_the_token_is_spent(devcluster, tmp_path):
    bot = devcluster.add_bot()
    data = tmp_path / "bot"
    out = plugin("login", *join_args(bot), "--kube-cluster", KUBE_CLUSTER, "--data-dir", str(data), "--ttl", "30s",
                 env=web_trust(devcluster))
    assert out.returncode == errors.USAGE, out.stderr
    assert out.stdout == ""
    [line] = out.stderr.strip().splitlines()
    assert "--ttl" in line and "Traceback" not in out.stderr
    assert bot["token"] not in out.stderr
    assert not data.exists()
    stats = devcluster.stats()
    assert stats["joins"] == 0 and stats["rejected_requests"] == 0 and stats["kube_certs_issued"] == 0
    login(devcluster, data, bot=bot)  # the same token still works for a normal login
    assert devcluster.stats()["joins"] == 1
    assert credentials(data).returncode == 0


def test_identity_pem_records_its_arrival_and_older_files_still_load(tmp_path, monkeypatch):
    """The `received-at` line of identity.pem maps a 2 min identity issued by a server 5 min behind us onto our
    clock (the -5m login above depends on it); TLS libraries skip the line; a file written without it loads as
    if both clocks agreed."""
    issued = 1_800_000_000  # the server's "now"
    key = pki.generate_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bot-robot")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(datetime.fromtimestamp(issued - 60, timezone.utc))
            .not_valid_after(datetime.fromtimestamp(issued, timezone.utc) + timedelta(minutes=2))
            .sign(key, hashes.SHA256()))
    cert_pem, key_pem = pki.cert_pem(cert), pki.private_key_pem(key)
    dd = DataDir(tmp_path / "data")
    dd.create()
    monkeypatch.setattr(clock, "now", lambda: issued + 300)  # our clock, 5 min ahead, when the answer arrives
    identity.save(dd, cert_pem, key_pem)
    ident = identity.load(dd)
    assert ident.skew == 300 and ident.expires_at == issued + 300 + 120
    assert ident.renew_at() == issued + 300 + 80  # due after 2/3 of the lifetime, on our clock
    identity.check_usable(ident, issued + 300 + 119)  # valid until NotAfter on our clock ...
    with pytest.raises(IdentityRejected):
        identity.check_usable(ident, issued + 300 + 120)  # ... and not a second longer
    ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(dd.identity_path)  # the line is PEM explanatory text

    dd.write(IDENTITY, (cert_pem + key_pem).encode())  # as written before the line existed
    old = identity.load(dd)
    assert old.received_at is None and old.skew == 0
    assert old.renew_at() == issued + 80 and old.expires_at == issued + 120
