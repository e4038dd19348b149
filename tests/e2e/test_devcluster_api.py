"""The devcluster's auth API (protocol v1) and admin CLI, against a real server process."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kubectl_teleport import pki
from tests.devcluster_fixture import (
    BotIdentity,
    DevCluster,
    api_client,
    devcluster_cmd,
    devcluster_env,
    fetch_host_ca_pems,
    host_ca_pem,
    join_bot,
    kube_credentials,
    start_devcluster,
)

ROLE = "machine-id-kube-role"
CLUSTER = "example-k8s-cluster"


def error_of(resp: httpx.Response) -> tuple[int, str]:
    body = resp.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert body["error"]["message"]
    return resp.status_code, body["error"]["code"]


def new_key_pem() -> tuple[str, str]:
    key = pki.generate_key()
    return pki.public_key_pem(key), pki.private_key_pem(key)


def renew(dc: DevCluster, tmp: Path, ident: BotIdentity, public_pem: str | None = None,
          key_pem: str | None = None) -> tuple[httpx.Response, BotIdentity | None]:
    if public_pem is None:
        public_pem, key_pem = new_key_pem()
    with api_client(dc, tmp, ident) as c:
        resp = c.post("/v1/bots/renew", json={"public_tls_key": public_pem})
    if resp.status_code != 200:
        return resp, None
    return resp, BotIdentity(resp.json()["tls_cert"], key_pem or "", resp.json()["generation"])


def write_role(tmp: Path, name: str, body: str) -> str:
    path = tmp / f"{name}.yaml"
    path.write_text(f"kind: role\nversion: v5\nmetadata:\n  name: {name}\nspec:\n{body}")
    return str(path)


# discovery, pinning, bots add ---------------------------------------------------------------------------------

def test_ping_ca_pin_and_bots_add(devcluster: DevCluster, tmp_path: Path) -> None:
    ca = host_ca_pem(devcluster)
    pin = pki.spki_pin(pki.load_cert(ca))
    with api_client(devcluster, tmp_path) as c:
        ping = c.get("/v1/ping").json()
        assert c.get("/v1/cluster/ca").json() == {"cluster_name": "devcluster", "ca_pems": [ca]}
    assert ping == {"cluster_name": "devcluster", "server_version": ping["server_version"], "protocol_version": 1,
                    "kube": {"server": devcluster.kube_server, "tls_server_name": "kube.teleport.cluster.local"}}
    assert devcluster.ca_pin == pin
    added = devcluster.add_bot()
    assert added["ca_pins"] == [pin] and added["proxy"] == devcluster.proxy and added["bot"] == "robot"
    assert len(added["token"]) == 32
    # the user CA (client certs) is another CA than the host CA the pin is for
    assert pki.spki_pin(pki.load_cert(devcluster.user_ca_pem)) != pin
    text = devcluster.admin("bots", "add", "robot2", "--roles", ROLE).stdout
    token = text.split("The bot token: ", 1)[1].split()[0]
    assert (f"kubectl-teleport login --proxy {devcluster.proxy} --token {token} --ca-pin {pin} "
            f"--kube-cluster {CLUSTER}") in text


def test_cluster_ca_matches_pin_even_unverified(devcluster: DevCluster) -> None:
    [pem] = fetch_host_ca_pems(devcluster.proxy)
    assert pki.pins_match([pki.load_cert(pem)], [devcluster.ca_pin])


# join ---------------------------------------------------------------------------------------------------------

def test_join_issues_generation_one_and_token_is_single_use(devcluster: DevCluster, tmp_path: Path) -> None:
    token = devcluster.add_bot()["token"]
    pub, _ = new_key_pem()
    body = {"token": token, "role": "Bot", "join_method": "token", "public_tls_key": pub}
    with api_client(devcluster, tmp_path) as c:
        first = c.post("/v1/join", json=body)
        second = c.post("/v1/join", json=body)
        unknown = c.post("/v1/join", json={**body, "token": "0" * 32})
    assert first.status_code == 200
    answer = first.json()
    assert answer["bot"] == "robot" and answer["generation"] == 1 and answer["cluster_name"] == "devcluster"
    assert answer["tls_ca_certs"] == [host_ca_pem(devcluster)]
    cert = pki.load_cert(answer["tls_cert"])
    ident = pki.identity_of(cert)
    assert (ident.username, ident.groups, ident.renewable, ident.generation) == ("bot-robot", [ROLE], True, 1)
    assert answer["expires"] == pki.not_after(cert).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert (pki.not_after(cert) - pki.not_before(cert)).total_seconds() == 3600 + 60  # backdated 1 min
    assert pki.public_key_pem(cert.public_key()) == pub
    cert.verify_directly_issued_by(pki.load_cert(devcluster.user_ca_pem))
    assert error_of(second) == (401, "invalid_token")
    assert error_of(unknown) == (401, "invalid_token")
    stats = devcluster.stats()
    assert stats["joins"] == 1 and stats["rejected_requests"] == 2


def test_bad_requests_are_rejected_without_state_change(devcluster: DevCluster, tmp_path: Path) -> None:
    token = devcluster.add_bot()["token"]
    pub, _ = new_key_pem()
    good = {"token": token, "role": "Bot", "join_method": "token", "public_tls_key": pub}
    p384 = ec.generate_private_key(ec.SECP384R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    bad_bodies = [
        {**good, "role": "Node"}, {**good, "join_method": "iam"}, {k: v for k, v in good.items() if k != "role"},
        {**good, "public_tls_key": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"},
        {**good, "public_tls_key": p384}, {k: v for k, v in good.items() if k != "public_tls_key"},
        {**good, "ttl_seconds": "1h"}, {**good, "ttl_seconds": -5}, {**good, "ttl_seconds": True},
        {**good, "token": 12}, {k: v for k, v in good.items() if k != "token"},
    ]
    with api_client(devcluster, tmp_path) as c:
        for body in bad_bodies:
            assert error_of(c.post("/v1/join", json=body)) == (400, "bad_request"), body
        for raw in (b"{not json", b"[1, 2]", b"\xff\xfe", b""):
            resp = c.post("/v1/join", content=raw, headers={"Content-Type": "application/json"})
            assert error_of(resp) == (400, "bad_request"), raw
        big = c.post("/v1/join", content=b"{" + b" " * (64 * 1024) + b"}",
                     headers={"Content-Type": "application/json"})
        assert error_of(big) == (413, "request_too_large")
        assert error_of(c.get("/v1/nope")) == (404, "not_found")
        assert error_of(c.get("/v1/join")) == (405, "method_not_allowed")
        assert error_of(c.post("/v1/ping", json={})) == (405, "method_not_allowed")
        assert error_of(c.post("/v1/bots/renew", json={"public_tls_key": pub})) == (401, "unauthenticated")
        assert error_of(c.post("/v1/kube/certs", json={"public_tls_key": pub, "kubernetes_cluster": CLUSTER})
                        ) == (401, "unauthenticated")
        assert error_of(c.get("/v1/kube/clusters")) == (401, "unauthenticated")
        # none of it consumed the token
        ok = c.post("/v1/join", json=good)
    assert ok.status_code == 200
    stats = devcluster.stats()
    assert stats["joins"] == 1
    assert stats["rejected_requests"] == len(bad_bodies) + 4 + 1 + 3 + 3


def test_token_ttl_flag(devcluster: DevCluster) -> None:
    added = devcluster.add_bot(token_ttl="2h")
    assert added["expires"] > pki.utcnow().strftime("%Y-%m-%dT%H:%M:%SZ")
    bad = devcluster.admin("bots", "add", "x", "--roles", ROLE, "--token-ttl", "soon", check=False)
    assert bad.returncode == 2 and bad.stderr.startswith("kubectl-teleport-devcluster: error: --token-ttl")
    assert bad.stderr.count("\n") == 1


# renew ----------------------------------------------------------------------------------------------------------

def test_renew_increments_generation(devcluster: DevCluster, tmp_path: Path) -> None:
    ident = join_bot(devcluster, tmp_path)
    resp, gen2 = renew(devcluster, tmp_path, ident)
    assert resp.status_code == 200 and gen2 is not None and gen2.generation == 2
    assert pki.identity_of(pki.load_cert(gen2.cert_pem)).generation == 2
    resp, gen3 = renew(devcluster, tmp_path, gen2)
    assert gen3 is not None and gen3.generation == 3
    assert pki.identity_of(pki.load_cert(gen3.cert_pem)).generation == 3
    bots = json.loads(devcluster.admin("bots", "ls", "--format", "json").stdout)
    assert bots == [{"name": "robot", "roles": [ROLE], "generation": 3, "locked": False}]
    assert devcluster.stats()["identity_renewals"] == 2


def test_generation_mismatch_locks_until_unlocked(devcluster: DevCluster, tmp_path: Path) -> None:
    gen1 = join_bot(devcluster, tmp_path)
    _, gen2 = renew(devcluster, tmp_path, gen1)
    assert gen2 is not None
    stale, _ = renew(devcluster, tmp_path, gen1)
    assert error_of(stale) == (403, "generation_mismatch")
    current, _ = renew(devcluster, tmp_path, gen2)
    assert error_of(current) == (403, "bot_locked")
    with api_client(devcluster, tmp_path, gen2) as c:
        pub, _ = new_key_pem()
        assert error_of(c.post("/v1/kube/certs", json={"public_tls_key": pub, "kubernetes_cluster": CLUSTER})
                        ) == (403, "bot_locked")
    locks = json.loads(devcluster.admin("locks", "ls", "--format", "json").stdout)
    assert [lk["bot"] for lk in locks] == ["robot"] and "generation" in locks[0]["reason"]
    assert devcluster.stats()["bots_locked"] == 1
    devcluster.admin("locks", "rm", "robot")
    assert json.loads(devcluster.admin("locks", "ls", "--format", "json").stdout) == []
    again = devcluster.admin("locks", "rm", "robot", check=False)
    assert again.returncode == 4
    resp, gen3 = renew(devcluster, tmp_path, gen2)
    assert resp.status_code == 200 and gen3 is not None and gen3.generation == 3


def test_idempotent_retry_returns_the_same_certificate(devcluster: DevCluster, tmp_path: Path) -> None:
    gen1 = join_bot(devcluster, tmp_path)
    pub, key = new_key_pem()
    first, _ = renew(devcluster, tmp_path, gen1, pub, key)
    retry, _ = renew(devcluster, tmp_path, gen1, pub, key)  # the client crashed before saving `first`
    assert first.status_code == retry.status_code == 200
    assert retry.json() == first.json()  # same bytes, same generation
    assert retry.json()["generation"] == 2
    stats = devcluster.stats()
    assert stats["idempotent_retries"] == 1 and stats["identity_renewals"] == 1 and stats["bots_locked"] == 0
    assert json.loads(devcluster.admin("bots", "ls", "--format", "json").stdout)[0]["generation"] == 2
    other, _ = renew(devcluster, tmp_path, gen1)  # same generation, another key: a copy of the identity
    assert error_of(other) == (403, "generation_mismatch")
    assert devcluster.stats()["bots_locked"] == 1


def test_concurrent_renewals_with_one_identity_let_exactly_one_win(devcluster: DevCluster,
                                                                   tmp_path: Path) -> None:
    gen1 = join_bot(devcluster, tmp_path)
    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(lambda i: renew(devcluster, tmp_path / str(i), gen1)[0], range(20)))
    codes = sorted(r.status_code for r in results)
    assert codes.count(200) == 1 and codes.count(403) == 19
    assert {r.json()["error"]["code"] for r in results if r.status_code == 403} <= {"generation_mismatch",
                                                                                      "bot_locked"}
    stats = devcluster.stats()
    assert stats["identity_renewals"] == 1 and stats["bots_locked"] == 1 and stats["rejected_requests"] == 19


def test_rejoin_replaces_the_identity(devcluster: DevCluster, tmp_path: Path) -> None:
    gen1 = join_bot(devcluster, tmp_path)
    renew(devcluster, tmp_path, gen1)
    renew(devcluster, tmp_path, gen1)  # locks
    fresh = join_bot(devcluster, tmp_path)  # bots add again + join
    assert fresh.generation == 1
    bots = json.loads(devcluster.admin("bots", "ls", "--format", "json").stdout)
    assert bots[0]["generation"] == 1 and bots[0]["locked"] is False
    resp, _ = renew(devcluster, tmp_path, fresh)
    assert resp.status_code == 200


def test_removed_bot_is_unauthenticated(devcluster: DevCluster, tmp_path: Path) -> None:
    ident = join_bot(devcluster, tmp_path)
    devcluster.admin("bots", "rm", "robot")
    resp, _ = renew(devcluster, tmp_path, ident)
    assert error_of(resp) == (401, "unauthenticated")
    with api_client(devcluster, tmp_path, ident) as c:
        assert error_of(c.get("/v1/kube/clusters")) == (401, "unauthenticated")
    assert devcluster.admin("bots", "rm", "robot", check=False).returncode == 4


# Kubernetes certificates ----------------------------------------------------------------------------------------

def test_kube_cert_for_the_seed(devcluster: DevCluster, tmp_path: Path) -> None:
    ident = join_bot(devcluster, tmp_path, ttl_seconds=7200)  # so the identity's expiry is not the cap
    cert_pem, _, answer = kube_credentials(devcluster, tmp_path, ident)
    cert = pki.load_cert(cert_pem)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "alice"
    assert [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == ["example"]
    ident_k = pki.identity_of(cert)
    assert ident_k.kube_users == ["alice"] and ident_k.kube_groups == ["example"]
    assert ident_k.kube_cluster == CLUSTER and ident_k.teleport_cluster == "devcluster"
    assert not ident_k.renewable
    cert.verify_directly_issued_by(pki.load_cert(devcluster.user_ca_pem))
    assert answer["kube_ca_certs"] == [host_ca_pem(devcluster)]
    assert answer["server"] == devcluster.kube_server
    assert answer["tls_server_name"] == "kube.teleport.cluster.local"
    assert (answer["kubernetes_cluster"], answer["kubernetes_user"], answer["kubernetes_groups"]) == (
        CLUSTER, "alice", ["example"])
    assert (pki.not_after(cert) - pki.not_before(cert)).total_seconds() == 3600 + 60
    _, _, short = kube_credentials(devcluster, tmp_path, ident, ttl_seconds=600)
    assert (pki.not_after(pki.load_cert(short["tls_cert"])) - pki.not_before(pki.load_cert(short["tls_cert"]))
            ).total_seconds() == 600 + 60
    with api_client(devcluster, tmp_path, ident) as c:
        clusters = c.get("/v1/kube/clusters").json()
    assert clusters == {"clusters": [{"name": CLUSTER, "labels": {"env": "dev"}, "kubernetes_users": ["alice"],
                                      "kubernetes_groups": ["example"]}]}
    assert devcluster.stats()["kube_certs_issued"] == 2


def test_kube_user_rules_and_label_matching(devcluster: DevCluster, tmp_path: Path) -> None:
    devcluster.admin("create", "-f", write_role(tmp_path, "two-users", "  allow:\n    kubernetes_labels: {'*': '*'}\n"
                                                "    kubernetes_users: [alice, bob]\n    kubernetes_groups: [ops]\n"))
    devcluster.admin("create", "-f", write_role(tmp_path, "groups-only", "  allow:\n    kubernetes_labels: {env: dev}\n"
                                                "    kubernetes_groups: [viewers]\n"))
    devcluster.admin("create", "-f", write_role(tmp_path, "prod-only", "  allow:\n    kubernetes_labels: {env: prod}\n"
                                                "    kubernetes_users: [root]\n"))
    devcluster.admin("kube", "add", "prod-cluster", "--labels", "env=prod")
    two = join_bot(devcluster, tmp_path, "two", "two-users")
    groups = join_bot(devcluster, tmp_path, "grp", "groups-only")
    prod = join_bot(devcluster, tmp_path, "prod", "prod-only")
    pub, _ = new_key_pem()

    def ask(ident: BotIdentity, **body: object) -> httpx.Response:
        with api_client(devcluster, tmp_path, ident) as c:
            return c.post("/v1/kube/certs", json={"public_tls_key": pub, "kubernetes_cluster": CLUSTER, **body})

    ambiguous = ask(two)
    assert error_of(ambiguous) == (400, "bad_request")
    assert "alice" in ambiguous.json()["error"]["message"] and "bob" in ambiguous.json()["error"]["message"]
    chosen = ask(two, kubernetes_user="bob")
    assert chosen.status_code == 200 and chosen.json()["kubernetes_user"] == "bob"
    assert pki.identity_of(pki.load_cert(chosen.json()["tls_cert"])).username == "bob"
    assert error_of(ask(two, kubernetes_user="mallory")) == (403, "access_denied")
    as_bot = ask(groups)
    assert as_bot.status_code == 200
    assert (as_bot.json()["kubernetes_user"], as_bot.json()["kubernetes_groups"]) == ("bot-grp", ["viewers"])
    assert error_of(ask(prod)) == (403, "access_denied")  # env: prod does not match env=dev
    on_prod = ask(prod, kubernetes_cluster="prod-cluster")
    assert on_prod.status_code == 200 and on_prod.json()["kubernetes_user"] == "root"
    assert error_of(ask(groups, kubernetes_cluster="prod-cluster")) == (403, "access_denied")
    assert error_of(ask(two, kubernetes_cluster="nope")) == (404, "unknown_kube_cluster")
    assert error_of(ask(two, kubernetes_cluster=5)) == (400, "bad_request")
    with api_client(devcluster, tmp_path, prod) as c:
        assert [x["name"] for x in c.get("/v1/kube/clusters").json()["clusters"]] == ["prod-cluster"]


def test_kube_cert_with_stale_identity_does_not_lock(devcluster: DevCluster, tmp_path: Path) -> None:
    gen1 = join_bot(devcluster, tmp_path)
    _, gen2 = renew(devcluster, tmp_path, gen1)
    pub, _ = new_key_pem()
    with api_client(devcluster, tmp_path, gen1) as c:
        resp = c.post("/v1/kube/certs", json={"public_tls_key": pub, "kubernetes_cluster": CLUSTER})
    assert error_of(resp) == (403, "generation_mismatch")
    assert json.loads(devcluster.admin("bots", "ls", "--format", "json").stdout)[0]["locked"] is False
    assert gen2 is not None
    kube_credentials(devcluster, tmp_path, gen2)


def test_hundred_concurrent_requests_are_counted_exactly(devcluster: DevCluster, tmp_path: Path) -> None:
    ident = join_bot(devcluster, tmp_path)
    pub, _ = new_key_pem()
    with api_client(devcluster, tmp_path, ident) as c:  # httpx allows 100 connections by default
        def one(i: int) -> int:
            body = {"public_tls_key": pub, "kubernetes_cluster": CLUSTER if i % 2 else "nope"}
            return c.post("/v1/kube/certs", json=body).status_code

        with ThreadPoolExecutor(100) as pool:
            codes = list(pool.map(one, range(100)))
    assert codes.count(200) == 50 and codes.count(404) == 50
    stats = devcluster.stats()
    assert stats["kube_certs_issued"] == 50 and stats["rejected_requests"] == 50


# secrecy, CLI, lifecycle -----------------------------------------------------------------------------------

def test_no_secret_in_logs_or_state(devcluster: DevCluster, tmp_path: Path) -> None:
    added = devcluster.add_bot()
    pub, key = new_key_pem()
    with api_client(devcluster, tmp_path) as c:
        ident = c.post("/v1/join", json={"token": added["token"], "role": "Bot", "join_method": "token",
                                         "public_tls_key": pub}).json()
        c.post("/v1/join", json={"token": added["token"], "role": "Bot", "join_method": "token",
                                 "public_tls_key": pub})
    bot = BotIdentity(ident["tls_cert"], key, 1)
    _, gen2 = renew(devcluster, tmp_path, bot)
    assert gen2 is not None
    cert_pem, _, _ = kube_credentials(devcluster, tmp_path, gen2)
    devcluster.stop()
    log = devcluster.log()
    assert "POST /v1/join 200" in log and "POST /v1/join 401" in log
    assert added["token"] not in log and "BEGIN" not in log
    for pem in (ident["tls_cert"], gen2.cert_pem, cert_pem, pub):
        body_line = pem.splitlines()[1]
        assert body_line not in log
    db = b"".join(p.read_bytes() for p in devcluster.state_dir.glob("devcluster.db*"))
    assert added["token"].encode() not in db
    conn = sqlite3.connect(devcluster.state_dir / "devcluster.db")
    assert conn.execute("SELECT COUNT(*) FROM tokens").fetchone()[0] == 0
    conn.close()


def test_admin_cli_errors_and_listing(devcluster: DevCluster, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: role\nversion: v5\nmetadata: {name: x}\nspec: {allow: {kubernetes_users: 7}}\n")
    for args, code in [(("create", "-f", str(bad)), 2), (("create", "-f", str(tmp_path / "missing.yaml")), 2),
                       (("bots", "add", "x", "--roles", "nope"), 4), (("bots", "rm", "nope"), 4),
                       (("locks", "rm", "nope"), 4), (("kube", "rm", "nope"), 4),
                       (("rolebindings", "add", "--namespace", "x", "--verbs", "get", "--resources", "pods",
                         "--user", "u", "--kube-cluster", "nope"), 4),
                       (("rolebindings", "add", "--namespace", "x", "--verbs", "fly", "--resources", "pods",
                         "--user", "u"), 2),
                       (("bots", "add"), 2)]:
        proc = devcluster.admin(*args, check=False)
        assert proc.returncode == code, (args, proc.stderr)
        assert proc.stderr.startswith("kubectl-teleport-devcluster: error: ") and proc.stderr.count("\n") == 1
        assert "Traceback" not in proc.stderr
    roles = json.loads(devcluster.admin("roles", "ls", "--format", "json").stdout)
    assert [r["name"] for r in roles] == [ROLE]
    assert roles[0]["kubernetes_labels"] == {"*": ["*"]} and roles[0]["max_session_ttl"] == 3600
    devcluster.admin("kube", "add", "second", "--labels", "env=qa,team=a")
    clusters = json.loads(devcluster.admin("kube", "ls", "--format", "json").stdout)
    assert clusters == [{"name": CLUSTER, "labels": {"env": "dev"}},
                        {"name": "second", "labels": {"env": "qa", "team": "a"}}]
    ambiguous = devcluster.admin("rolebindings", "add", "--namespace", "x", "--verbs", "get", "--resources", "pods",
                                 "--user", "u", check=False)
    assert ambiguous.returncode == 2 and "--kube-cluster" in ambiguous.stderr
    text = devcluster.admin("bots", "add", "robot", "--roles", ROLE).stdout
    assert "--kube-cluster <kube-cluster>" in text
    missing = subprocess.run(devcluster_cmd("stats", "--state-dir", str(tmp_path / "nowhere")), capture_output=True,
                             text=True, env=devcluster_env(), timeout=60)
    assert missing.returncode == 3 and "not an initialised" in missing.stderr
    assert "joins" in devcluster.admin("stats").stdout


def test_restart_keeps_the_cas_and_removes_the_ready_file(tmp_path: Path) -> None:
    first = start_devcluster(tmp_path / "dc")
    pin, user_ca = first.ca_pin, first.user_ca_pem
    first.stop()
    assert not (tmp_path / "dc" / "ready.json").exists()
    second = start_devcluster(tmp_path / "dc", "--cluster-name", "devcluster")
    try:
        assert (second.ca_pin, second.user_ca_pem) == (pin, user_ca)
        assert second.admin("kube", "ls").stdout.count(CLUSTER) == 1  # --seed-demo is idempotent
    finally:
        second.stop()
    conflict = subprocess.run(devcluster_cmd("start", "--state-dir", str(tmp_path / "dc" / "state"),
                                             "--cluster-name", "other"),
                              capture_output=True, text=True, env=devcluster_env(), timeout=60)
    assert conflict.returncode == 2 and "holds cluster 'devcluster'" in conflict.stderr


@pytest.mark.parametrize("addr", ["nohost", "127.0.0.1:99999", ":80"])
def test_start_rejects_bad_listen_address(tmp_path: Path, addr: str) -> None:
    proc = subprocess.run(devcluster_cmd("start", "--state-dir", str(tmp_path / "s"), "--listen", addr),
                          capture_output=True, text=True, env=devcluster_env(), timeout=60)
    assert proc.returncode == 2 and "invalid address" in proc.stderr
