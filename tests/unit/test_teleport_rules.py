"""The devcluster's Teleport rules without a server, per version, under an injected clock: the token join,
own renewal and the generation lock, bot instances, role impersonation and Kubernetes certificates, the key-field
and suite rules; and the pieces around them (profiles, error mapping, Go JSON, SANs, the version header)."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta, timezone
from functools import cache
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from kubectl_teleport import pki
from kubectl_teleport.devcluster import authgrpc, store, traceerr, versions
from kubectl_teleport.devcluster.authority import Authority
from kubectl_teleport.devcluster.bootstrap import initialise
from kubectl_teleport.devcluster.roles import parse_roles
from kubectl_teleport.devcluster.seed import DEMO_CLUSTER, seed_demo
from kubectl_teleport.devcluster.teleport_rules import JoinRequest, TeleportAuthority
from kubectl_teleport.devcluster.teleport_side import kube_proxy_sans
from kubectl_teleport.devcluster.tlsidentity import read_identity
from kubectl_teleport.devcluster.versions import ProfileError, make_profile
from kubectl_teleport.devcluster.webapi import WebApp, certs_json, join_request, parse_rfc3339
from kubectl_teleport.proto import teleport_auth_pb2 as pb

T0 = datetime(2026, 11, 25, 12, 0, 0, tzinfo=timezone.utc)
ROLE = "machine-id-kube-role"
MODES = [("16", "legacy"), ("17", "legacy"), ("17", "balanced-v1"), ("18", "balanced-v1")]
PROD_ROLE = """kind: role
version: v5
metadata: {name: prod-only}
spec:
  allow:
    kubernetes_labels: {env: prod}
    kubernetes_groups: [ops]
"""


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> datetime:
        return self.t

    def advance(self, **kw: float) -> None:
        self.t += timedelta(**kw)


@cache
def _private(suite: str, n: int) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    """A few keys per suite, made once (RSA 2048 generation is slow)."""
    return rsa.generate_private_key(65537, 2048) if suite == "legacy" else ec.generate_private_key(ec.SECP256R1())


def tls_pem(suite: str, n: int = 0) -> bytes:
    pub = _private(suite, n).public_key()
    fmt = serialization.PublicFormat.PKCS1 if suite == "legacy" else serialization.PublicFormat.SubjectPublicKeyInfo
    return pub.public_bytes(serialization.Encoding.PEM, fmt)


def ssh_line(suite: str, n: int = 0) -> bytes:
    return _private(suite, n).public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                         serialization.PublicFormat.OpenSSH) + b"\n"


def spki(suite: str, n: int = 0) -> bytes:
    return pki.public_key_der(_private(suite, n).public_key())  # type: ignore[arg-type]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def state(tmp_path: Path) -> Path:
    state_dir = tmp_path / "state"
    initialise(state_dir, None, T0)
    with store.opened(state_dir) as conn:
        seed_demo(conn, T0)
        role = parse_roles(PROD_ROLE)[0]
        with store.transaction(conn):
            store.put_role(conn, role.name, PROD_ROLE, role.to_dict())
    return state_dir


def authority(state: Path, clock: Clock, version: str = "17", suite: str | None = None) -> TeleportAuthority:
    return TeleportAuthority(state, make_profile(version, suite), now=clock)


def token(state: Path, clock: Clock, bot: str = "robot", roles: tuple[str, ...] = (ROLE,), ttl: int = 3600) -> str:
    return Authority(state, now=clock).add_bot(bot, list(roles), ttl)[0]


def join(auth: TeleportAuthority, tok: str, n: int = 0, **kw: object) -> pb.Certs:
    suite = auth.profile.suite
    return auth.register_using_token(JoinRequest(tok, "Bot", tls_pem(suite, n), ssh_line(suite, n), **kw))


def cert_of(certs: pb.Certs) -> x509.Certificate:
    return pki.load_cert(certs.tls)


def request(auth: TeleportAuthority, n: int = 0, hours: float = 1, **fields: object) -> pb.UserCertsRequest:
    suite = auth.profile.suite
    keys = {"public_key": ssh_line(suite, n)} if auth.profile.major < 17 else \
        {"ssh_public_key": ssh_line(suite, n), "tls_public_key": tls_pem(suite, n)}
    req = pb.UserCertsRequest(**{"username": "bot-robot", **keys, **fields})
    req.expires.FromDatetime(auth.now() + timedelta(hours=hours))
    return req


def kube_request(auth: TeleportAuthority, cluster: str = DEMO_CLUSTER, **fields: object) -> pb.UserCertsRequest:
    return request(auth, role_requests=[ROLE], use_role_requests=True, route_to_cluster="devcluster",
                   kubernetes_cluster=cluster, **fields)


def denied(kind: str, call, *args: object) -> traceerr.TraceError:  # type: ignore[no-untyped-def]
    with pytest.raises(traceerr.TraceError) as info:
        call(*args)
    assert info.value.kind == kind, info.value.message
    return info.value


def bot_row(state: Path, name: str = "robot") -> dict:
    with store.opened(state) as conn:
        return dict(store.get_bot(conn, name))


def counters(state: Path) -> dict[str, int]:
    with store.opened(state) as conn:
        return store.counters(conn)


# --- profiles and error mapping --------------------------------------------------------------------------


def test_profiles_default_and_refuse_what_teleport_does_not_have() -> None:
    assert make_profile() == versions.Profile("17.5.0", "balanced-v1", True)
    assert make_profile("16").suite == "legacy" and not make_profile("16").advertises_suite
    assert make_profile("18", "legacy").suite == "legacy" and make_profile("18").split_keys
    assert make_profile("16.1.3").bot_instances is False and make_profile("16.2.0").bot_instances is True
    assert make_profile("17", tls_routing=False).tls_routing is False
    for bad in (("16", "balanced-v1"), ("15", None), ("19", None), ("seventeen", None), ("17", "fips-v1")):
        with pytest.raises(ProfileError):
            make_profile(*bad)


def test_trace_kinds_map_to_grpc_codes_and_http_statuses() -> None:
    pairs = {traceerr.access_denied("x"): (7, 403), traceerr.bad_parameter("x"): (3, 400),
             traceerr.not_found("x"): (5, 404), traceerr.unknown("x"): (2, 500)}
    assert {(e.grpc_code, e.http_status) for e in pairs} == set(pairs.values())
    assert traceerr.access_denied("no").body() == {"error": {"message": "no"}}


# --- the token join --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("version", "suite"), MODES)
def test_join_gives_a_renewable_generation_1_identity_once(state: Path, clock: Clock, version: str,
                                                            suite: str) -> None:
    auth = authority(state, clock, version, suite)
    tok = token(state, clock)
    certs = join(auth, tok)
    cert = cert_of(certs)
    ident = read_identity(cert)
    assert (ident.username, ident.groups, ident.route_to_cluster) == ("bot-robot", ["bot-robot"], "devcluster")
    assert (ident.teleport_cluster, ident.renewable, ident.generation, ident.bot_name) == \
        ("devcluster", True, 1, "robot")
    assert ident.bot_instance_id and not ident.impersonator and not ident.disallow_reissue
    with store.opened(state) as conn:
        assert [c.decode() for c in certs.tls_ca_certs] == [store.get_ca(conn, "user")[0],
                                                            store.get_ca(conn, "host")[0]]
        assert [i["id"] for i in store.list_instances(conn, "robot")] == [ident.bot_instance_id]
    assert len(certs.ssh_ca_certs) == 2 and certs.ssh.startswith(b"ssh-rsa-cert" if suite == "legacy" else b"ecdsa")
    assert pki.not_after(cert) == T0 + timedelta(hours=1)  # no `expires`: Teleport's default renewable TTL
    assert bot_row(state)["generation"] == 1 and counters(state)["joins"] == 1
    again = denied(traceerr.ACCESS_DENIED, join, auth, tok, 1)
    assert "already used" in again.message


def test_v16_builds_both_certificates_from_the_ssh_key(state: Path, clock: Clock) -> None:
    auth = authority(state, clock, "16")
    req = JoinRequest(token(state, clock), "Bot", public_tls_key=tls_pem("legacy", 1),
                      public_ssh_key=ssh_line("legacy", 0))
    assert pki.public_key_der(cert_of(auth.register_using_token(req)).public_key()) == spki("legacy", 0)
    no_ssh = JoinRequest(token(state, clock, "other"), "Bot", public_tls_key=tls_pem("legacy", 0))
    err = denied(traceerr.UNKNOWN, auth.register_using_token, no_ssh)
    assert err.message == "ssh: no key found" and err.http_status == 500


def test_v17_uses_the_tls_key_for_tls(state: Path, clock: Clock) -> None:
    auth = authority(state, clock, "17")
    req = JoinRequest(token(state, clock), "Bot", public_tls_key=tls_pem("balanced-v1", 1),
                      public_ssh_key=ssh_line("balanced-v1", 0))
    certs = auth.register_using_token(req)
    assert pki.public_key_der(cert_of(certs).public_key()) == spki("balanced-v1", 1)
    ssh_cert = serialization.load_ssh_public_identity(certs.ssh)
    assert pki.public_key_der(ssh_cert.public_key()) == spki("balanced-v1", 0)  # type: ignore[arg-type]
    missing = JoinRequest(token(state, clock, "other"), "Bot", public_ssh_key=ssh_line("balanced-v1", 0))
    assert "public_tls_key" in denied(traceerr.BAD_PARAMETER, auth.register_using_token, missing).message


def test_16_1_has_no_bot_instances(state: Path, clock: Clock) -> None:
    auth = authority(state, clock, "16.1.4")
    cert = cert_of(join(auth, token(state, clock)))
    assert read_identity(cert).bot_instance_id == ""
    assert attr_oids(cert) == {"1.3.9999.1.7", "1.3.9999.1.13", "1.3.9999.1.14", "1.3.9999.2.18"}
    with store.opened(state) as conn:
        assert store.list_instances(conn) == []


def attr_oids(cert: x509.Certificate) -> set[str]:
    return {a.oid.dotted_string for a in cert.subject if a.oid.dotted_string.startswith("1.3.9999.")}


def test_join_expiry_is_capped_at_24h(state: Path, clock: Clock) -> None:
    auth = authority(state, clock)
    cert = cert_of(join(auth, token(state, clock), expires=T0 + timedelta(hours=48)))
    assert pki.not_after(cert) == T0 + timedelta(hours=24)
    past = token(state, clock, "past")
    err = denied(traceerr.BAD_PARAMETER, lambda: join(auth, past, expires=T0 - timedelta(seconds=1)))
    assert "future" in err.message


def test_an_expired_token_is_gone(state: Path, clock: Clock) -> None:
    auth = authority(state, clock)
    tok = token(state, clock, ttl=60)
    clock.advance(seconds=61)
    denied(traceerr.ACCESS_DENIED, join, auth, tok)
    with store.opened(state) as conn:
        assert conn.execute("SELECT COUNT(*) FROM tokens").fetchone()[0] == 0


def test_a_refused_join_does_not_spend_the_token(state: Path, clock: Clock) -> None:
    auth = authority(state, clock, "17", "balanced-v1")
    tok = token(state, clock)
    wrong_role = JoinRequest(tok, "Node", tls_pem("balanced-v1"), ssh_line("balanced-v1"))
    assert "role" in denied(traceerr.ACCESS_DENIED, auth.register_using_token, wrong_role).message
    wrong_key = JoinRequest(tok, "Bot", tls_pem("legacy"), ssh_line("legacy"))
    assert "ECDSA P-256" in denied(traceerr.BAD_PARAMETER, auth.register_using_token, wrong_key).message
    assert read_identity(cert_of(join(auth, tok))).generation == 1


# --- own renewal and the generation ---------------------------------------------------------------------


@pytest.mark.parametrize(("version", "suite"), MODES)
def test_renewal_bumps_the_generation_and_a_stale_one_locks(state: Path, clock: Clock, version: str,
                                                             suite: str) -> None:
    auth = authority(state, clock, version, suite)
    gen1 = cert_of(join(auth, token(state, clock)))
    clock.advance(minutes=10)
    renewed = auth.generate_user_certs(gen1, request(auth, 1, hours=30))
    gen2 = cert_of(renewed)
    ident = read_identity(gen2)
    assert (ident.generation, ident.renewable) == (2, True)
    assert ident.bot_instance_id == read_identity(gen1).bot_instance_id
    assert pki.not_after(gen2) == clock() + timedelta(hours=24)  # 30 h asked, 24 h given
    assert len(renewed.tls_ca_certs) == 2 and bot_row(state)["generation"] == 2
    err = denied(traceerr.ACCESS_DENIED, auth.generate_user_certs, gen1, request(auth, 2))
    assert err.message == "renewable cert generation mismatch" and err.grpc_code == 7
    row = bot_row(state)
    assert row["locked"] == 1 and "generation mismatch" in row["lock_reason"]
    assert "lock" in denied(traceerr.ACCESS_DENIED, auth.generate_user_certs, gen2, request(auth)).message
    c = counters(state)
    assert (c["identity_renewals"], c["bots_locked"], c["generation_mismatches"]) == (1, 1, 1)


def test_bot_instances_renew_independently_but_the_legacy_label_does_not(state: Path, clock: Clock) -> None:
    for version, survives in (("17", True), ("16.1.0", False)):
        auth = authority(state, clock, version)
        first = cert_of(join(auth, token(state, clock, f"b{survives}")))
        second = cert_of(join(auth, token(state, clock, f"b{survives}")))  # a second join of the same bot
        req = request(auth, username=f"bot-b{survives}")
        assert read_identity(cert_of(auth.generate_user_certs(second, req))).generation == 2
        if survives:  # its own instance: generation 1 is still current there
            assert read_identity(cert_of(auth.generate_user_certs(first, req))).generation == 2
        else:  # one counter per bot: the first identity is stale
            denied(traceerr.ACCESS_DENIED, auth.generate_user_certs, first, req)


def test_a_certificate_from_before_instances_gets_a_new_instance(state: Path, clock: Clock) -> None:
    old = cert_of(join(authority(state, clock, "16.1.0"), token(state, clock)))
    auth = authority(state, clock, "17")  # the cluster was upgraded
    renewed = read_identity(cert_of(auth.generate_user_certs(old, request(auth))))
    assert renewed.generation == 2 and renewed.bot_instance_id
    with store.opened(state) as conn:
        assert store.get_instance(conn, renewed.bot_instance_id)["generation"] == 2


def test_who_may_ask(state: Path, clock: Clock) -> None:
    auth = authority(state, clock)
    gen1 = cert_of(join(auth, token(state, clock)))
    denied(traceerr.ACCESS_DENIED, auth.generate_user_certs, None, request(auth))
    assert "for itself" in denied(traceerr.ACCESS_DENIED, auth.generate_user_certs, gen1,
                                  request(auth, username="bot-other")).message
    assert "not found" in denied(traceerr.NOT_FOUND, auth.generate_user_certs, gen1,
                                 request(auth, route_to_cluster="elsewhere")).message
    clock.advance(hours=2)  # past the identity's expiry
    denied(traceerr.ACCESS_DENIED, auth.generate_user_certs, gen1, request(auth))
    assert bot_row(state)["generation"] == 1 and not bot_row(state)["locked"]


def test_an_admin_lock_denies_renewal_impersonation_and_joins(state: Path, clock: Clock) -> None:
    auth = authority(state, clock)
    gen1 = cert_of(join(auth, token(state, clock)))
    with store.opened(state) as conn:
        store.set_lock(conn, "robot", True, "locked by an admin", 0)
    for req in (request(auth), kube_request(auth)):
        denied(traceerr.ACCESS_DENIED, auth.generate_user_certs, gen1, req)
    denied(traceerr.ACCESS_DENIED, join, auth, token(state, clock))
    assert bot_row(state)["generation"] == 1


# --- role impersonation and Kubernetes ------------------------------------------------------------------


@pytest.mark.parametrize(("version", "suite"), MODES)
def test_kube_certificate_is_impersonated_and_never_moves_the_generation(state: Path, clock: Clock,
                                                                          version: str, suite: str) -> None:
    auth = authority(state, clock, version, suite)
    gen1 = cert_of(join(auth, token(state, clock)))
    certs = auth.generate_user_certs(gen1, kube_request(auth))
    ident = read_identity(cert_of(certs))
    assert (ident.username, ident.groups, ident.kube_cluster) == ("bot-robot", [ROLE], DEMO_CLUSTER)
    assert (ident.kube_users, ident.kube_groups) == (["alice"], ["example"])
    assert (ident.renewable, ident.generation, ident.impersonator, ident.disallow_reissue) == \
        (False, 0, "bot-robot", True)
    assert len(certs.tls_ca_certs) == 1 and certs.ssh  # the user CA only; an SSH certificate too
    assert bot_row(state)["generation"] == 1
    assert read_identity(cert_of(auth.generate_user_certs(gen1, request(auth)))).generation == 2
    err = denied(traceerr.ACCESS_DENIED, auth.generate_user_certs, cert_of(certs), request(auth))
    assert "reissue" in err.message
    assert counters(state)["kube_certs_issued"] == 1 and counters(state)["impersonated_certs_issued"] == 1


def test_impersonated_certificates_are_capped(state: Path, clock: Clock) -> None:
    auth = authority(state, clock)
    gen1 = cert_of(join(auth, token(state, clock), expires=T0 + timedelta(minutes=30)))
    short = cert_of(auth.generate_user_certs(gen1, kube_request(auth)))  # 1 h asked
    assert pki.not_after(short) == T0 + timedelta(minutes=30)  # not past the identity that asked
    long = cert_of(auth.generate_user_certs(cert_of(join(auth, token(state, clock, "long"), expires=T0 +
                                                         timedelta(hours=20))),
                                            kube_request(auth, username="bot-long")))
    assert pki.not_after(long) == T0 + timedelta(hours=1)  # the role's max_session_ttl


def test_what_impersonation_may_not_do(state: Path, clock: Clock) -> None:
    auth = authority(state, clock)
    gen1 = cert_of(join(auth, token(state, clock)))
    err = denied(traceerr.ACCESS_DENIED, auth.generate_user_certs, gen1,
                 request(auth, role_requests=["prod-only"], use_role_requests=True))
    assert "impersonate" in err.message
    unknown = denied(traceerr.BAD_PARAMETER, auth.generate_user_certs, gen1, kube_request(auth, "nope"))
    assert unknown.grpc_code == 3 and "nope" in unknown.message
    own_role = request(auth, kubernetes_cluster=DEMO_CLUSTER)  # the bot's own role grants no cluster
    denied(traceerr.ACCESS_DENIED, auth.generate_user_certs, gen1, own_role)
    denied(traceerr.BAD_PARAMETER, auth.generate_user_certs, gen1, request(auth, use_role_requests=True))
    assert bot_row(state)["generation"] == 1  # none of these renewed anything


def test_roles_that_do_not_grant_the_cluster_are_denied(state: Path, clock: Clock) -> None:
    auth = authority(state, clock)
    gen1 = cert_of(join(auth, token(state, clock, roles=("prod-only",))))
    req = request(auth, role_requests=["prod-only"], use_role_requests=True, kubernetes_cluster=DEMO_CLUSTER)
    assert "do not grant" in denied(traceerr.ACCESS_DENIED, auth.generate_user_certs, gen1, req).message
    plain = read_identity(cert_of(auth.generate_user_certs(gen1, request(auth, role_requests=["prod-only"],
                                                                         use_role_requests=True))))
    assert plain.groups == ["prod-only"] and plain.kube_cluster == ""


def test_reissuable_impersonation_can_reissue_its_roles(state: Path, clock: Clock) -> None:
    auth = authority(state, clock)
    gen1 = cert_of(join(auth, token(state, clock)))
    reissuable = cert_of(auth.generate_user_certs(gen1, kube_request(auth, reissuable_role_impersonation=True)))
    assert not read_identity(reissuable).disallow_reissue
    again = read_identity(cert_of(auth.generate_user_certs(reissuable, request(auth,
                                                                               kubernetes_cluster=DEMO_CLUSTER))))
    assert (again.groups, again.impersonator, again.renewable, again.kube_users) == \
        ([ROLE], "bot-robot", False, ["alice"])


# --- key fields and the suite ---------------------------------------------------------------------------


def test_v16_reads_only_field_1(state: Path, clock: Clock) -> None:
    auth = authority(state, clock, "16")
    gen1 = cert_of(join(auth, token(state, clock)))
    split = request(auth)
    split.ClearField("public_key")
    split.ssh_public_key, split.tls_public_key = ssh_line("legacy"), tls_pem("legacy")
    err = denied(traceerr.UNKNOWN, auth.generate_user_certs, gen1, split)
    assert err.message == "ssh: no key found" and err.grpc_code == 2
    renewed = auth.generate_user_certs(gen1, request(auth, 1))
    assert pki.public_key_der(cert_of(renewed).public_key()) == spki("legacy", 1) and renewed.ssh


def test_v17_needs_fields_22_or_23(state: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    auth = authority(state, clock, "17")
    gen1 = cert_of(join(auth, token(state, clock)))
    legacy = pb.UserCertsRequest(username="bot-robot", public_key=ssh_line("balanced-v1"), role_requests=[ROLE],
                                 use_role_requests=True)
    legacy.expires.FromDatetime(T0 + timedelta(hours=1))
    assert "deprecated" in denied(traceerr.BAD_PARAMETER, auth.generate_user_certs, gen1, legacy).message
    tls_only = request(auth, role_requests=[ROLE], use_role_requests=True)
    tls_only.ClearField("ssh_public_key")
    out = auth.generate_user_certs(gen1, tls_only)
    assert out.tls and not out.ssh
    ssh_only = request(auth, role_requests=[ROLE], use_role_requests=True)
    ssh_only.ClearField("tls_public_key")
    out = auth.generate_user_certs(gen1, ssh_only)
    assert out.ssh and not out.tls
    monkeypatch.setattr(versions, "V17_ACCEPTS_LEGACY_PUBLIC_KEY", True)  # the assumption, flipped
    assert auth.generate_user_certs(gen1, legacy).tls


def test_the_suite_decides_the_key_algorithm(state: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    legacy, balanced = authority(state, clock, "18", "legacy"), authority(state, clock, "18", "balanced-v1")
    gen1 = cert_of(join(balanced, token(state, clock)))
    rsa_req = request(legacy, role_requests=[ROLE], use_role_requests=True)
    assert "RSA 2048" in denied(traceerr.BAD_PARAMETER, balanced.generate_user_certs, gen1, rsa_req).message
    small = rsa.generate_private_key(65537, 1024).public_key().public_bytes(serialization.Encoding.PEM,
                                                                             serialization.PublicFormat.PKCS1)
    denied(traceerr.BAD_PARAMETER, legacy.register_using_token,
           JoinRequest(token(state, clock, "small"), "Bot", small, ssh_line("legacy")))
    monkeypatch.setattr(versions, "ENFORCE_SUITE_KEY_ALGORITHM", False)
    assert balanced.generate_user_certs(gen1, rsa_req).tls


# --- web JSON, SANs, the version header --------------------------------------------------------------------


def test_join_request_json_follows_go() -> None:
    req = join_request({"token": "t", "role": "Bot", "public_tls_key": base64.b64encode(b"pem").decode(),
                        "expires": "2026-11-25T12:00:00.123456789+01:00", "unknown_field": [1, 2]})
    assert req.public_tls_key == b"pem" and req.public_ssh_key == b""
    assert req.expires == datetime(2026, 11, 25, 11, 0, 0, 123456, tzinfo=timezone.utc)
    assert parse_rfc3339("2026-11-25T12:00:00Z") == datetime(2026, 11, 25, 12, tzinfo=timezone.utc)
    for bad in ({"token": 5}, {"public_tls_key": "not base64!"}, {"public_tls_key": "cGVt"[:3]},
                {"expires": "tomorrow"}):
        with pytest.raises(traceerr.TraceError) as info:
            join_request(bad)
        assert info.value.kind == traceerr.BAD_PARAMETER
    assert certs_json(pb.Certs(tls=b"x")) == {"tls": "eA=="}
    assert certs_json(pb.Certs(tls_ca_certs=[b"a", b"b"])) == {"tls_ca_certs": ["YQ==", "Yg=="]}


def test_find_follows_the_profile(state: Path, clock: Clock) -> None:
    v16 = WebApp(authority(state, clock, "16"), proxy_addr="p:1", kube_addr="k:2").find()
    assert "signature_algorithm_suite" not in v16["auth"] and v16["server_version"] == "16.5.0"
    assert v16["min_client_version"] == "15.0.0-aa" and v16["proxy"]["kube"]["public_addr"] == "p:1"
    plain = WebApp(TeleportAuthority(state, make_profile("18", "legacy", tls_routing=False), now=clock),
                   proxy_addr="p:1", kube_addr="k:2").find(ping=True)
    assert plain["auth"]["signature_algorithm_suite"] == "legacy" and plain["proxy"]["tls_routing_enabled"] is False
    assert plain["proxy"]["kube"] == {"enabled": True, "public_addr": "k:2", "listen_addr": "k:2"}
    assert plain["cluster_name"] == "devcluster" and plain["auth"]["local"] == {"name": ""}


def test_kube_route_server_names() -> None:
    assert kube_proxy_sans("127.0.0.1") == ["kube-teleport-proxy-alpn.teleport.cluster.local"]
    assert kube_proxy_sans("localhost") == ["kube-teleport-proxy-alpn.teleport.cluster.local"]
    assert kube_proxy_sans("teleport.example.com") == ["kube-teleport-proxy-alpn.teleport.cluster.local",
                                                       "kube-teleport-proxy-alpn.teleport.example.com"]


class _Ctx:
    def __init__(self, metadata: tuple) -> None:
        self.metadata = metadata

    def invocation_metadata(self) -> tuple:
        return self.metadata


@pytest.mark.parametrize(("value", "ok"), [("17.0.0", True), ("16.4.2-dev.1", True), ("v18.1.0", True),
                                           ("seventeen", False), ("17", False), ("", False)])
def test_a_version_header_must_parse(value: str, ok: bool) -> None:
    ctx = _Ctx((("version", value),))
    if ok:
        authgrpc._check_version(ctx)  # type: ignore[arg-type]
    else:
        with pytest.raises(traceerr.TraceError) as info:
            authgrpc._check_version(ctx)  # type: ignore[arg-type]
        assert info.value.grpc_code == 3
    authgrpc._check_version(_Ctx(()))  # type: ignore[arg-type]  # absent is fine


def test_serving_cert_for_auth_has_only_the_api_domain(state: Path) -> None:
    from kubectl_teleport.devcluster.ca import CertAuthority, issue_serving_cert

    with store.opened(state) as conn:
        host = CertAuthority.from_pem(*store.get_ca(conn, "host"))
    cert = issue_serving_cert(host, pki.generate_key().public_key(), "auth",
                              ["teleport.cluster.local", "*.teleport.cluster.local"], T0, loopback=False)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["teleport.cluster.local", "*.teleport.cluster.local"]
    assert sans.get_values_for_type(x509.IPAddress) == []
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "auth"


# --- ListResources -----------------------------------------------------------------------------------------


def _impersonated(auth: TeleportAuthority, state: Path, clock: Clock, roles: tuple[str, ...] = (ROLE,),
                  bot: str = "robot") -> x509.Certificate:
    """An identity impersonating `roles` with no Kubernetes cluster: what `kube ls` lists with."""
    gen1 = cert_of(join(auth, token(state, clock, bot, roles)))
    return cert_of(auth.generate_user_certs(gen1, request(auth, username=f"bot-{bot}", role_requests=list(roles),
                                                          use_role_requests=True, route_to_cluster="devcluster")))


def _add_clusters(state: Path, clusters: dict[str, dict[str, str]]) -> None:
    with store.opened(state) as conn:
        for name, labels in clusters.items():
            store.put_kube_cluster(conn, name, labels)


def _names(resp: pb.ListResourcesResponse) -> list[str]:
    return [r.kubernetes_server.spec.cluster.metadata.name for r in resp.resources]


@pytest.mark.parametrize(("version", "suite"), MODES)
def test_list_resources_shows_only_what_the_roles_grant(state: Path, clock: Clock, version: str,
                                                        suite: str) -> None:
    auth = authority(state, clock, version, suite)
    _add_clusters(state, {"dev-b": {"env": "dev", "team": "x"}, "prod-a": {"env": "prod"}})
    prod = _impersonated(auth, state, clock, ("prod-only",))
    resp = auth.list_resources(prod, pb.ListResourcesRequest(resource_type="kube_server"))
    assert _names(resp) == ["prod-a"] and resp.next_key == ""
    server = resp.resources[0].kubernetes_server
    assert (server.kind, server.metadata.name, server.spec.version) == ("kube_server", "prod-a", auth.profile.version)
    assert dict(server.spec.cluster.metadata.labels) == {"env": "prod"}
    generation = bot_row(state)["generation"]
    # the bot identity itself (role bot-robot) is granted no cluster; listing changes no generation
    bot_ident = cert_of(join(auth, token(state, clock, "other")))
    assert _names(auth.list_resources(bot_ident, pb.ListResourcesRequest(resource_type="kube_server"))) == []
    assert bot_row(state)["generation"] == generation


def test_list_resources_pages_like_teleport(state: Path, clock: Clock) -> None:
    auth = authority(state, clock)
    _add_clusters(state, {"aa-prod": {"env": "prod"}, "bb-prod": {"env": "prod"}}
                  | {f"dev-{i:02d}": {"env": "dev"} for i in range(4)})
    prod = _impersonated(auth, state, clock, ("prod-only",), "p")
    wild = _impersonated(auth, state, clock)  # '*': '*' grants every cluster

    def page(ident: x509.Certificate, limit: int, start: str = "") -> tuple[list[str], str]:
        resp = auth.list_resources(ident, pb.ListResourcesRequest(resource_type="kube_server", limit=limit,
                                                                  start_key=start))
        return _names(resp), resp.next_key

    assert page(wild, 3) == (["aa-prod", "bb-prod", "dev-00"], "dev-01")  # StartKey is inclusive
    assert page(wild, 3, "dev-01") == (["dev-01", "dev-02", "dev-03"], DEMO_CLUSTER)
    assert page(wild, 3, DEMO_CLUSTER) == ([DEMO_CLUSTER], "")
    # NextKey is the first server past a full page, taken before access is checked: the last page may be empty
    assert page(prod, 2) == (["aa-prod", "bb-prod"], "dev-00")
    assert page(prod, 2, "dev-00") == ([], "")
    assert page(wild, 0)[0] == ["aa-prod", "bb-prod", "dev-00", "dev-01", "dev-02", "dev-03", DEMO_CLUSTER]
    denied(traceerr.BAD_PARAMETER, auth.list_resources, wild, pb.ListResourcesRequest(resource_type="kube_server",
                                                                                       limit=-1))
    assert counters(state)["list_resources_pages"] == 6


@pytest.mark.parametrize(("version", "suite"), MODES)
def test_list_resources_refuses_what_teleport_refuses(state: Path, clock: Clock, version: str, suite: str) -> None:
    auth = authority(state, clock, version, suite)
    ident = _impersonated(auth, state, clock)
    err = denied(traceerr.NOT_IMPLEMENTED, auth.list_resources, ident, pb.ListResourcesRequest(resource_type="role"))
    assert err.grpc_code == 12 and err.message == "resource type role does not support pagination"
    assert _names(auth.list_resources(ident, pb.ListResourcesRequest(resource_type="node"))) == []
    denied(traceerr.ACCESS_DENIED, auth.list_resources, None, pb.ListResourcesRequest(resource_type="kube_server"))
    _lock(state, "robot")
    err = denied(traceerr.ACCESS_DENIED, auth.list_resources, ident,
                 pb.ListResourcesRequest(resource_type="kube_server"))
    assert "lock targeting" in err.message


def _lock(state: Path, bot: str) -> None:
    with store.opened(state) as conn:
        store.set_lock(conn, bot, True, "test", 0)


# --- GetRole ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("version", "suite"), MODES)
def test_a_bot_reads_its_own_role_as_teleport_builds_it(state: Path, clock: Clock, version: str,
                                                        suite: str) -> None:
    auth = authority(state, clock, version, suite)
    bot = cert_of(join(auth, token(state, clock, roles=(ROLE, "prod-only"))))
    role = auth.get_role(bot, pb.GetRoleRequest(name="bot-robot"))
    assert (role.kind, role.version, role.metadata.name) == ("role", "v7", "bot-robot")
    assert dict(role.metadata.labels) == {"teleport.internal/bot": "robot"}
    assert list(role.spec.allow.impersonate.roles) == [ROLE, "prod-only"]
    assert [(list(r.resources), list(r.verbs)) for r in role.spec.allow.rules] == \
        [(["cert_authority"], ["readnosecrets"])]
    assert not role.spec.deny.impersonate.roles
    generation = bot_row(state)["generation"]
    # a bot re-added without roles: its role allows no impersonation (what login without --role reports)
    Authority(state, now=clock).add_bot("robot", [], 3600)
    assert list(auth.get_role(bot, pb.GetRoleRequest(name="bot-robot")).spec.allow.impersonate.roles) == []
    assert bot_row(state)["generation"] == generation  # reading changes nothing


@pytest.mark.parametrize(("version", "suite"), MODES)
def test_get_role_refuses_what_teleport_refuses(state: Path, clock: Clock, version: str, suite: str) -> None:
    auth = authority(state, clock, version, suite)
    bot = cert_of(join(auth, token(state, clock)))
    cert_of(join(auth, token(state, clock, "other")))
    # only the roles the caller holds: another bot's role, or a role it may impersonate, needs `read` on `role`
    for name in ("bot-other", ROLE, "no-such-role"):
        err = denied(traceerr.ACCESS_DENIED, auth.get_role, bot, pb.GetRoleRequest(name=name))
        assert err.message == 'access denied to perform action "read" on "role"' and err.grpc_code == 7
    denied(traceerr.ACCESS_DENIED, auth.get_role, None, pb.GetRoleRequest(name="bot-robot"))
    denied(traceerr.BAD_PARAMETER, auth.get_role, bot, pb.GetRoleRequest(name=""))
    # an impersonated identity holds its roles: it reads them; one deleted since is NotFound in Teleport's words
    prod = _impersonated(auth, state, clock, ("prod-only",), "p")
    assert auth.get_role(prod, pb.GetRoleRequest(name="prod-only")).metadata.name == "prod-only"
    with store.opened(state) as conn:
        store.delete_role(conn, "prod-only")
    err = denied(traceerr.NOT_FOUND, auth.get_role, prod, pb.GetRoleRequest(name="prod-only"))
    assert err.message == "role prod-only is not found" and err.grpc_code == 5
    _lock(state, "robot")
    assert "lock targeting" in denied(traceerr.ACCESS_DENIED, auth.get_role, bot,
                                      pb.GetRoleRequest(name="bot-robot")).message
