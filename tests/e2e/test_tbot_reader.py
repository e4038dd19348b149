"""End to end: the installed plugin reading tbot destinations (`credentials --tbot-dir`, `kubeconfig --tbot-dir`),
with tbot-like files (harness/tbotdest.py), a devcluster and the real kubectl 1.37.1."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from harness import tbotdest as td
from kubectl_teleport import cache, errors, execcred, pki
from tests.e2e.test_init_acls import _as, _preload, needs_root, users  # noqa: F401 (users: a fixture)
from tests.plugin_helpers import (
    EXEC_INFO_V1,
    HOT_PATH,
    KUBE_CLUSTER,
    cert_of,
    credentials,
    hit_imports,
    kubectl_run,
    login,
    make_due,
    plugin,
)

EXEC_INFO_V1BETA1 = EXEC_INFO_V1.replace("/v1", "/v1beta1")


@pytest.fixture(scope="module")
def ca() -> td.CA:
    return td.CA.make("ec")


def tbot_cred(dest: Path, cdir: Path, info: str = EXEC_INFO_V1) -> subprocess.CompletedProcess:
    return plugin("credentials", "--tbot-dir", str(dest), "--cache-dir", str(cdir),
                  env={"KUBERNETES_EXEC_INFO": info})


def later(path: Path) -> None:
    """A later mtime for a rewritten file (two writes inside one coarse kernel timestamp tick look alike)."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))


def served_pair_matches(stdout: str) -> str:
    status = json.loads(stdout)["status"]
    cert = pki.load_cert(status["clientCertificateData"])
    assert pki.public_keys_equal(cert.public_key(), pki.load_private_key(status["clientKeyData"]))
    return status["clientCertificateData"]


def tbot_kubeconfig(dest: Path, tmp_path: Path) -> tuple[Path, dict]:
    """`kubectl-teleport kubeconfig --tbot-dir` into a file; the file and its exec stanza."""
    target = tmp_path / "kubeconfig.yaml"
    out = plugin("kubeconfig", "--tbot-dir", str(dest), "--kubeconfig", str(target),
                 "--cache-dir", str(tmp_path / "cache"))
    assert out.returncode == 0, out.stderr
    return target, yaml.safe_load(target.read_text())["users"][0]["user"]["exec"]


# kubectl against a devcluster through a tbot-style destination -------------------------------------------------

def write_from_login(dest: Path, data: Path, ca: td.CA) -> str:
    """What tbot would write for the certificate and key `credentials` serves from a real login."""
    status = json.loads(credentials(data).stdout)["status"]
    key = pki.load_private_key(status["clientKeyData"])
    login_cfg = yaml.safe_load((data / "kubeconfig.yaml").read_text())
    ca_pems = [base64.b64decode(login_cfg["clusters"][0]["cluster"]["certificate-authority-data"]).decode()]
    text = td.identity_text(status["clientKeyData"], status["clientCertificateData"], ca_pems,
                            ca.ssh_cert_line(key), [ca.ssh_ca_line()])
    dest.mkdir(mode=0o700, exist_ok=True)
    for name, body in (("identity", text), ("tlscert", status["clientCertificateData"]),
                       ("key", status["clientKeyData"])):
        td.write_in_place(dest / name, body)
    return status["clientCertificateData"]


def test_kubectl_through_a_tbot_destination_from_a_real_login(devcluster, kubectl, tmp_path, ca):
    data, dest = tmp_path / "bot", tmp_path / "tbot-out"
    login(devcluster, data)
    first = write_from_login(dest, data, ca)
    login_cluster = yaml.safe_load((data / "kubeconfig.yaml").read_text())["clusters"][0]["cluster"]
    context = td.write_kubeconfig(dest, server=login_cluster["server"], kube_cluster=KUBE_CLUSTER,
                                  ca_pems=[base64.b64decode(login_cluster["certificate-authority-data"]).decode()],
                                  tls_server_name=login_cluster.get("tls-server-name", ""))
    kubeconfig, exec_ = tbot_kubeconfig(dest, tmp_path)
    doc = yaml.safe_load(kubeconfig.read_text())
    assert doc["current-context"] == context == f"{td.TELEPORT_CLUSTER}-{KUBE_CLUSTER}"
    assert exec_["args"] == ["credentials", "--tbot-dir", str(dest), "--cache-dir", str(tmp_path / "cache")]
    pods = kubectl_run(kubectl, kubeconfig, tmp_path, "get", "pods", "-n", "demo")
    assert pods.returncode == 0, pods.stderr
    assert pods.stdout.startswith("NAME") and len(pods.stdout.strip().splitlines()) >= 3
    who = kubectl_run(kubectl, kubeconfig, tmp_path, "auth", "whoami", "-o", "json")
    assert who.returncode == 0, who.stderr
    assert json.loads(who.stdout)["status"]["userInfo"]["username"] == "alice"
    assert cert_of(tbot_cred(dest, tmp_path / "cache").stdout) == first
    # tbot renews: new certificate and key written in place; the very next kubectl call uses them
    make_due(data)
    renewed = write_from_login(dest, data, ca)
    assert renewed != first
    assert kubectl_run(kubectl, kubeconfig, tmp_path, "get", "pods", "-n", "demo").returncode == 0
    assert cert_of(tbot_cred(dest, tmp_path / "cache").stdout) == renewed
    assert devcluster.stats()["kube_certs_issued"] == 2  # the reader never asks the cluster for anything


# the hot path --------------------------------------------------------------------------------------------------

def test_a_hit_imports_only_the_hot_path_and_a_rewrite_is_read_at_once(tmp_path, ca):
    """Exactly what kubectl runs: a hit imports nothing beyond the interpreter's start-up but our three hot-path
    modules; the call after tbot rewrote its files rebuilds (cryptography), the one after that is a hit again."""
    dest = tmp_path / "dest"
    td.write_destination(dest, ca)
    td.write_kubeconfig(dest, server="https://127.0.0.1:1", ca_pems=[td.cert_pem(ca.cert)])
    _, exec_ = tbot_kubeconfig(dest, tmp_path)
    env = {**os.environ, "KUBERNETES_EXEC_INFO": EXEC_INFO_V1 + "\n"}
    hit, mods = hit_imports(exec_, env)
    assert hit.returncode == 0 and mods == HOT_PATH
    renewed = td.write_destination(dest, ca)
    later(dest / "identity")
    rebuilt, mods = hit_imports(exec_, env)
    assert rebuilt.returncode == 0 and "cryptography.x509" in mods  # the check above can fail
    assert served_pair_matches(rebuilt.stdout) == renewed.cert_pem
    again, mods = hit_imports(exec_, env)
    assert mods == HOT_PATH and again.stdout == rebuilt.stdout  # byte-identical


@pytest.mark.parametrize("layout", ["identity", "pair"])
@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_both_versions_each_layout_byte_identical(tmp_path, layout, kind):
    ca = td.CA.make(kind)
    dest, cdir = tmp_path / "dest", tmp_path / "cache"
    issued = td.write_destination(dest, ca, kind=kind, layout=layout)
    v1, beta, v1_again = (tbot_cred(dest, cdir, info) for info in (EXEC_INFO_V1, EXEC_INFO_V1BETA1, EXEC_INFO_V1))
    assert (v1.returncode, beta.returncode, v1.stderr, beta.stderr) == (0, 0, "", "")
    assert json.loads(v1.stdout)["apiVersion"] == execcred.V1
    assert json.loads(beta.stdout)["apiVersion"] == execcred.V1BETA1
    assert json.loads(v1.stdout)["status"] == json.loads(beta.stdout)["status"] and v1_again.stdout == v1.stdout
    assert served_pair_matches(v1.stdout) == issued.cert_pem
    assert json.loads(v1.stdout)["status"]["clientKeyData"] == issued.key_pem
    entry = cache.read_tbot_fast(str(dest), str(cdir))
    assert entry is not None and entry.source[:1] == (b"i" if layout == "identity" else b"p")


# what is never served --------------------------------------------------------------------------------------------

def one_line_failure(out: subprocess.CompletedProcess, code: int, *words: str) -> None:
    assert out.returncode == code, out.stderr
    assert out.stdout == "" and out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert "BEGIN" not in out.stderr
    for word in words:
        assert word in out.stderr


def test_half_written_mismatched_and_expired_are_never_served(tmp_path, ca):
    dest, cdir = tmp_path / "dest", tmp_path / "cache"
    issued = td.write_destination(dest, ca, layout="identity")
    td.write_in_place(dest / "identity", issued.identity[:issued.identity.index("-----END CERTIFICATE")])
    started = time.monotonic()
    one_line_failure(tbot_cred(dest, cdir), errors.UNAVAILABLE, "incomplete", "tbot")
    assert time.monotonic() - started < 5
    other = td.write_destination(tmp_path / "other", ca, layout="identity")
    td.write_in_place(dest / "identity", issued.identity.replace(issued.key_pem, other.key_pem))
    one_line_failure(tbot_cred(dest, cdir), errors.UNAVAILABLE, "does not match its private key")
    td.write_destination(dest, ca, layout="identity", issued_at=time.time() - 7200, lifetime=3600)
    one_line_failure(tbot_cred(dest, cdir), errors.UNAVAILABLE, "not renewing", "is `tbot` running?")
    one_line_failure(tbot_cred(tmp_path / "nowhere", cdir), errors.UNAVAILABLE, "does not exist")
    assert not Path(cache.tbot_entry_path(str(cdir), str(dest))).exists()


def test_files_rewritten_in_place_while_kubectl_calls_are_never_served_torn(tmp_path, ca):
    """A thread rewrites `identity` as tbot does (truncate, a pause, write; every 60 ms, half-written for 10 ms of
    them) while the plugin runs: every call serves a whole certificate with its own key, one of those written,
    without a warning (a read that caught the file half-written was read again)."""
    dest, cdir = tmp_path / "dest", tmp_path / "cache"
    sets = [td.write_destination(tmp_path / f"set{i}", ca, layout="identity") for i in range(2)]
    td.write_destination(dest, ca, layout="identity")
    stop = threading.Event()

    def tbot() -> None:
        i = 0
        while not stop.is_set():
            fd = os.open(dest / "identity", os.O_WRONLY | os.O_TRUNC)
            time.sleep(0.01)  # a slow writer: a reader may find the file empty
            os.write(fd, sets[i % 2].identity.encode())
            os.close(fd)
            i += 1
            time.sleep(0.05)

    writer = threading.Thread(target=tbot, daemon=True)
    writer.start()
    try:
        with ThreadPoolExecutor(4) as pool:
            outs = list(pool.map(lambda _: tbot_cred(dest, cdir), range(40)))
    finally:
        stop.set()
        writer.join()
    for out in outs:
        assert (out.returncode, out.stderr) == (0, "")
        assert served_pair_matches(out.stdout) in {s.cert_pem for s in sets}


# a destination owned by the tbot user, shared with the reader by ACLs ---------------------------------------------

@needs_root
def test_reader_reads_a_destination_of_the_tbot_user(ca, users):  # noqa: F811
    """tbot's destination belongs to the tbot user and is shared with the reader by ACLs (as `tbot init` does):
    the reader's kubectl reads it into a cache of its own; another user gets one line, exit 9."""
    import pwd
    import shutil
    import tempfile

    from kubectl_teleport import tbotdir  # noqa: F401 (imported before the child drops root)
    from kubectl_teleport.commands import tbot_credentials  # noqa: F401
    from kubectl_teleport.store import acl

    if not acl.supported():
        pytest.skip("no POSIX ACLs here")
    base = Path(tempfile.mkdtemp(prefix="kt-tbot-", dir="/tmp"))
    try:
        os.chmod(base, 0o711)
        bot, reader, other = (pwd.getpwnam(users[role]) for role in ("bot", "reader", "other"))
        dest = base / "tbot-out"
        issued = td.write_destination(dest, ca, layout="full")

        def shared(perm: int) -> bytes:  # owner, the reader, no group, no other (tbot init's shape)
            return acl.encode_acl([(acl.ACL_USER_OBJ, perm | 2, acl.ACL_UNDEFINED_ID),
                                   (acl.ACL_USER, perm, reader.pw_uid), (acl.ACL_GROUP_OBJ, 0, acl.ACL_UNDEFINED_ID),
                                   (acl.ACL_MASK, perm, acl.ACL_UNDEFINED_ID),
                                   (acl.ACL_OTHER, 0, acl.ACL_UNDEFINED_ID)])

        for path in [dest, *dest.iterdir()]:
            os.chown(path, bot.pw_uid, bot.pw_gid)
            acl.set_acl(path, acl.ACL_ACCESS, shared(5 if path == dest else 4))
        for user in (reader, other):
            home = base / user.pw_name
            home.mkdir(mode=0o700)
            os.chown(home, user.pw_uid, user.pw_gid)
        _preload()

        def cred(user: pwd.struct_passwd) -> subprocess.CompletedProcess:
            return _as(user.pw_name, "credentials", "--tbot-dir", str(dest), "--cache-dir",
                       str(base / user.pw_name / "cache"), env={"KUBERNETES_EXEC_INFO": EXEC_INFO_V1})

        first, again = cred(reader), cred(reader)
        assert first.returncode == 0, first.stderr
        assert served_pair_matches(first.stdout) == issued.cert_pem and again.stdout == first.stdout
        cdir = base / reader.pw_name / "cache"
        entry = Path(cache.tbot_entry_path(str(cdir), str(dest)))
        assert (cdir.stat().st_uid, cdir.stat().st_mode & 0o777) == (reader.pw_uid, 0o700)
        assert (entry.stat().st_uid, entry.stat().st_mode & 0o777) == (reader.pw_uid, 0o600)
        denied = cred(other)
        assert denied.returncode == errors.UNSAFE_STATE and denied.stdout == ""
        assert denied.stderr.count("\n") == 1 and "permission denied" in denied.stderr
    finally:
        shutil.rmtree(base, ignore_errors=True)
