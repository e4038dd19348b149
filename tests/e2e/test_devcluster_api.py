"""The devcluster's admin CLI, ready file, counters and state handling, against a real server process (the
Teleport protocol itself is in test_devcluster_teleport)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from kubectl_teleport import pki
from tests.devcluster_fixture import (
    DevCluster,
    devcluster_cmd,
    devcluster_env,
    host_ca_pem,
    join_bot,
    kube_credentials,
    start_devcluster,
)

ROLE = "machine-id-kube-role"
CLUSTER = "example-k8s-cluster"


# the ready file, bots add -------------------------------------------------------------------------------------

def test_ready_file_and_bots_add_name_the_teleport_proxy(devcluster: DevCluster, tmp_path: Path) -> None:
    pin = pki.spki_pin(pki.load_cert(host_ca_pem(devcluster)))
    assert devcluster.ca_pin == pin and devcluster.proxy == devcluster.teleport_proxy
    # the user CA (client certs) is another CA than the host CA the pin is for
    assert pki.spki_pin(pki.load_cert(devcluster.user_ca_pem)) != pin
    added = devcluster.add_bot()
    assert added["ca_pins"] == [pin] and added["bot"] == "robot" and len(added["token"]) == 32
    assert added["proxy"] == added["teleport_proxy"] == devcluster.teleport_proxy
    assert added["login_command"] == added["teleport_login_command"]
    assert added["login_command"] == (f"SSL_CERT_FILE={devcluster.web_ca_file} kubectl-teleport login --proxy "
                                      f"{devcluster.teleport_proxy} --token {added['token']} --ca-pin {pin} "
                                      f"--kube-cluster {CLUSTER} --role {ROLE}")
    text = devcluster.admin("bots", "add", "robot2", "--roles", ROLE).stdout
    token = text.split("The bot token: ", 1)[1].split()[0]
    assert (f"kubectl-teleport login --proxy {devcluster.teleport_proxy} --token {token} --ca-pin {pin} "
            f"--kube-cluster {CLUSTER} --role {ROLE}") in text


def test_token_ttl_flag(devcluster: DevCluster) -> None:
    added = devcluster.add_bot(token_ttl="2h")
    assert added["expires"] > pki.utcnow().strftime("%Y-%m-%dT%H:%M:%SZ")
    bad = devcluster.admin("bots", "add", "x", "--roles", ROLE, "--token-ttl", "soon", check=False)
    assert bad.returncode == 2 and bad.stderr.startswith("kubectl-teleport-devcluster: error: --token-ttl")
    assert bad.stderr.count("\n") == 1


# counters -------------------------------------------------------------------------------------------------------

def test_hundred_concurrent_requests_are_counted_exactly(devcluster: DevCluster, tmp_path: Path) -> None:
    ident = join_bot(devcluster, tmp_path)

    def one(i: int) -> str:
        try:
            kube_credentials(devcluster, tmp_path, ident, CLUSTER if i % 2 else "nope")
        except grpc.RpcError as e:
            return e.code().name
        return "OK"

    with ThreadPoolExecutor(100) as pool:
        codes = list(pool.map(one, range(100)))
    assert codes.count("OK") == 50 and codes.count("INVALID_ARGUMENT") == 50
    stats = devcluster.stats()
    assert stats["kube_certs_issued"] == 50 and stats["rejected_requests"] == 50 and stats["joins"] == 1
    assert stats["identity_renewals"] == 0 and stats["bots_locked"] == 0


# secrecy, CLI, lifecycle -----------------------------------------------------------------------------------

def test_no_secret_in_logs_or_state(devcluster: DevCluster, tmp_path: Path) -> None:
    added = devcluster.add_bot()
    ident = join_bot(devcluster, tmp_path, "robot2")
    cert_pem, key_pem, _ = kube_credentials(devcluster, tmp_path, ident)
    devcluster.stop()
    log = devcluster.log()
    assert "/webapi/host/credentials" in log
    assert added["token"] not in log and "BEGIN" not in log
    for pem in (ident.cert_pem, ident.key_pem, cert_pem, key_pem):
        assert pem.splitlines()[1] not in log
    db = b"".join(p.read_bytes() for p in devcluster.state_dir.glob("devcluster.db*"))
    assert added["token"].encode() not in db
    conn = sqlite3.connect(devcluster.state_dir / "devcluster.db")
    assert conn.execute("SELECT COUNT(*) FROM tokens").fetchone()[0] == 1  # robot's, unspent; robot2's is gone
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
    proc = subprocess.run(devcluster_cmd("start", "--state-dir", str(tmp_path / "s"), "--proxy-listen", addr),
                          capture_output=True, text=True, env=devcluster_env(), timeout=60)
    assert proc.returncode == 2 and "invalid address" in proc.stderr
