"""Our `--destination DIR` is a drop-in tbot destination: the same file names, PEM types and line formats as
tbot's Kubernetes output (harness/tbotdest.py), and the plugin's own tbot reader (`credentials --tbot-dir`,
`kubeconfig --tbot-dir`) reads it unchanged, with the real kubectl."""

from __future__ import annotations

import base64
import json
import re
import stat
from pathlib import Path

import yaml
from cryptography.hazmat.primitives import serialization

from harness import tbotdest as td
from kubectl_teleport import pki, tbotdir
from kubectl_teleport.outputs import destination
from tests.plugin_helpers import KUBE_CLUSTER, cert_of, credentials, kubectl_run, login, make_due, plugin

PEM_BEGIN = re.compile(r"^-----BEGIN ([A-Z ]+)-----$")
# tbot's kube v1 output also writes teleport-database-ca.crt: a database CA this project has no use for
TBOT_ONLY = {"teleport-database-ca.crt"}


def line_kind(line: str) -> str:
    """What one non-PEM line of a tbot file is: an SSH certificate, a public key, a known_hosts CA line."""
    if line.startswith("@cert-authority "):
        fields = line.split()
        assert re.fullmatch(r"[^,\s]+,\*\.[^,\s]+", fields[1]), line  # `<cluster>,*.<cluster>`
        assert fields[-1] in ("type=host", "type=user"), line
        serialization.load_ssh_public_key(" ".join(fields[2:4]).encode())
        return "@cert-authority"
    if "-cert-v01@openssh.com " in line:
        assert isinstance(serialization.load_ssh_public_identity(line.encode()), serialization.SSHCertificate)
        return "ssh-cert"
    serialization.load_ssh_public_key(line.encode())
    return "ssh-public-key"


def shape(path: Path) -> list[str]:
    """A file's structure: its PEM block types and line kinds in order (consecutive repeats folded)."""
    out: list[str] = []
    inside = False
    for line in path.read_text().splitlines():
        begin = PEM_BEGIN.match(line)
        if begin:
            kind, inside = f"PEM {begin.group(1)}", True
        elif inside:
            inside = not line.startswith("-----END ")
            continue
        elif not line.strip():
            continue
        else:
            kind = line_kind(line)
        if not out or out[-1] != kind:
            out.append(kind)
    return out


def kubeconfig_shape(path: Path) -> dict:
    doc = yaml.safe_load(path.read_text())
    assert doc["current-context"] in [c["name"] for c in doc["contexts"]]
    return {"top": sorted(doc), "cluster": sorted(doc["clusters"][0]["cluster"]),
            "context": sorted(doc["contexts"][0]["context"]),
            "context_name": bool(re.fullmatch(r"[^-]+(\.[^.]+)*-.+", doc["contexts"][0]["name"]))}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_our_destination_has_tbots_files_and_formats_and_tbots_reader_reads_it(devcluster, kubectl, tmp_path):
    data, ours, theirs = tmp_path / "bot", tmp_path / "ours", tmp_path / "tbot"
    login(devcluster, data, "--destination", str(ours))
    key = pki.load_private_key((ours / "key").read_text())
    kind = "ec" if "BEGIN PRIVATE KEY" in (ours / "key").read_text() else "rsa"
    ca = td.CA.make(kind)
    td.write_destination(theirs, ca, kind=kind, layout="full")
    td.write_kubeconfig(theirs, server="https://127.0.0.1:1", ca_pems=[td.cert_pem(ca.cert)],
                        tls_server_name="kube.example.com")

    # names: tbot's set (less its database CA), no extra file; private modes
    names = {p.name for p in ours.iterdir()}
    assert names == {p.name for p in theirs.iterdir()} - TBOT_ONLY == set(destination.FILES)
    assert mode(ours) == 0o700 and all(mode(ours / n) == 0o600 for n in names)
    # formats: file by file, the same PEM types and line kinds in the same order
    for name in sorted(names - {"kubeconfig.yaml"}):
        assert shape(ours / name) == shape(theirs / name), name
    assert shape(ours / "identity") == ["PEM PRIVATE KEY" if kind == "ec" else "PEM RSA PRIVATE KEY",
                                        "ssh-cert", "PEM CERTIFICATE", "@cert-authority", "PEM CERTIFICATE"]
    assert kubeconfig_shape(ours / "kubeconfig.yaml") == kubeconfig_shape(theirs / "kubeconfig.yaml")

    # contents agree with each other as tbot's do: one key, its public half, its SSH and TLS certificates
    cert = pki.load_cert((ours / "tlscert").read_text())
    assert pki.public_keys_equal(cert.public_key(), key)
    assert pki.public_keys_equal(pki.load_ssh_public_key((ours / "key.pub").read_text()), key)
    ssh_cert = serialization.load_ssh_public_identity((ours / "key-cert.pub").read_text().strip().encode())
    assert pki.public_keys_equal(ssh_cert.public_key(), key)
    ident_key, ident_cert, ident_cas = tbotdir.split_identity((ours / "identity").read_text())
    assert ident_key == (ours / "key").read_text() and ident_cert == (ours / "tlscert").read_text()
    assert pki.load_certs((ours / "teleport-host-ca.crt").read_text()) == [pki.load_cert(p) for p in ident_cas]
    user_cas = pki.load_certs((ours / "teleport-user-ca.crt").read_text())
    assert cert.issuer in [c.subject for c in user_cas]
    assert pki.load_cert(ident_cas[0]).subject != cert.issuer  # the identity's TLS CAs are the host CA(s)

    # the plugin's tbot reader serves our files unchanged: the certificate the data dir's cache serves
    served = plugin("credentials", "--tbot-dir", str(ours), "--cache-dir", str(tmp_path / "cache"),
                    env={"KUBERNETES_EXEC_INFO": json.dumps({"apiVersion": "client.authentication.k8s.io/v1",
                                                             "kind": "ExecCredential", "spec": {}})})
    assert served.returncode == 0, served.stderr
    assert cert_of(served.stdout) == (ours / "tlscert").read_text() == cert_of(credentials(data).stdout)
    [context] = tbotdir.read_kubeconfig(str(ours))
    assert context.name == f"{devcluster.cluster_name}-{KUBE_CLUSTER}"
    # ... and kubectl through `kubeconfig --tbot-dir` of our destination reaches the cluster as the bot's user
    target = tmp_path / "via-tbot-reader.yaml"
    made = plugin("kubeconfig", "--tbot-dir", str(ours), "--kubeconfig", str(target),
                  "--cache-dir", str(tmp_path / "cache"))
    assert made.returncode == 0, made.stderr
    who = kubectl_run(kubectl, target, tmp_path, "auth", "whoami", "-o", "json")
    assert who.returncode == 0, who.stderr
    assert json.loads(who.stdout)["status"]["userInfo"]["username"] == "alice"
    assert base64.b64decode(yaml.safe_load(target.read_text())["clusters"][0]["cluster"]
                            ["certificate-authority-data"]).decode() == (ours / "teleport-host-ca.crt").read_text()


def test_renewal_rewrites_the_set_with_a_matching_ssh_certificate_and_drops_legacy_files(devcluster, tmp_path):
    data, ours = tmp_path / "bot", tmp_path / "ours"
    login(devcluster, data, "--destination", str(ours))
    (ours / "tlscacerts").write_text("left by an older version\n")
    old_pub = (ours / "key.pub").read_text()
    make_due(data)
    again = plugin("start", "--oneshot", "--data-dir", str(data))
    assert again.returncode == 0, again.stderr
    assert not (ours / "tlscacerts").exists()
    key = pki.load_private_key((ours / "key").read_text())
    assert (ours / "key.pub").read_text() != old_pub
    ssh_cert = serialization.load_ssh_public_identity((ours / "key-cert.pub").read_text().strip().encode())
    assert pki.public_keys_equal(ssh_cert.public_key(), key)
    assert (ours / "key-cert.pub").read_text().strip() in (ours / "identity").read_text()
    out = plugin("logout", "--data-dir", str(data))
    assert out.returncode == 0, out.stderr
    assert not ours.exists()
