"""tbot-like destinations for tests and benchmarks: files laid out and formatted as tbot's Kubernetes output
writes them (docs/design.md, "Reading a tbot destination"), generated here with `cryptography`.

- `identity`: private key PEM, SSH certificate line, TLS certificate PEM, `@cert-authority` lines, TLS CA PEMs
  (Teleport's identity file format), plus `tlscert`, `key`, `key.pub`, `key-cert.pub`, the three
  `teleport-*-ca.crt` and `kubeconfig.yaml` (context `<teleport-cluster>-<kube-cluster>`, exec `tbot kube
  credentials`, v1beta1);
- keys as Teleport encodes them: RSA as PKCS#1 (`RSA PRIVATE KEY`), ECDSA as PKCS#8 (`PRIVATE KEY`);
- every file written as tbot does: in place, `O_CREAT|O_WRONLY|O_TRUNC`, mode 0600 (not atomically).
"""

from __future__ import annotations

import base64
import datetime
import os
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

TELEPORT_CLUSTER = "tele.example.com"


def new_key(kind: str) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
    """An ECDSA P-256 (`ec`) or RSA 2048 (`rsa`) key."""
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, *, sec1: bool = False) -> str:
    """The key as Teleport writes it (RSA: PKCS#1; ECDSA: PKCS#8, or SEC 1 `EC PRIVATE KEY` with `sec1`)."""
    traditional = isinstance(key, rsa.RSAPrivateKey) or sec1
    fmt = serialization.PrivateFormat.TraditionalOpenSSL if traditional else serialization.PrivateFormat.PKCS8
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption()).decode()


def cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@dataclass
class CA:
    """A throwaway CA (the Teleport user CA of these tests)."""

    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    cert: x509.Certificate
    ssh_key: ec.EllipticCurvePrivateKey

    @classmethod
    def make(cls, kind: str = "ec", name: str = TELEPORT_CLUSTER) -> CA:
        key = new_key(kind)
        subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, name),
                             x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=30))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(key, hashes.SHA256()))
        return cls(key, cert, ec.generate_private_key(ec.SECP256R1()))

    def issue(self, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, *, lifetime: float = 3600,
              issued_at: float | None = None, user: str = "bot-robot") -> x509.Certificate:
        """A client certificate for `key`, NotBefore backdated a minute before `issued_at` as Teleport does."""
        at = datetime.datetime.fromtimestamp(issued_at if issued_at is not None else
                                             datetime.datetime.now().timestamp(), datetime.timezone.utc)
        return (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, user)]))
                .issuer_name(self.cert.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(at - datetime.timedelta(minutes=1))
                .not_valid_after(at + datetime.timedelta(seconds=lifetime))
                .sign(self.key, hashes.SHA256()))

    def ssh_cert_line(self, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, user: str = "bot-robot") -> str:
        """An OpenSSH user certificate line for `key` (what tbot puts in `key-cert.pub` and `identity`)."""
        now = int(datetime.datetime.now().timestamp())
        cert = (serialization.SSHCertificateBuilder().public_key(key.public_key()).serial(1)
                .type(serialization.SSHCertificateType.USER).key_id(user.encode()).valid_principals([user.encode()])
                .valid_after(now - 60).valid_before(now + 3600).sign(self.ssh_key))
        return cert.public_bytes().decode()

    def ssh_ca_line(self) -> str:
        pub = self.ssh_key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                     serialization.PublicFormat.OpenSSH).decode()
        return f"@cert-authority {TELEPORT_CLUSTER},*.{TELEPORT_CLUSTER} {pub} type=user"


def write_in_place(path: Path, data: bytes | str) -> None:
    """Write as tbot does: open with O_TRUNC and write, in place (a reader can catch it half-written)."""
    raw = data.encode() if isinstance(data, str) else data
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        view = memoryview(raw)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def identity_text(key: str, cert: str, ca_pems: list[str], ssh_cert: str = "", ssh_cas: list[str] = ()) -> str:
    """Teleport's identity file: key, SSH certificate, TLS certificate, SSH CA lines, TLS CAs (each ending in a
    newline)."""
    parts = [key, ssh_cert, cert, *ssh_cas, *ca_pems]
    return "".join(p if p.endswith("\n") else p + "\n" for p in parts if p)


@dataclass
class Issued:
    """What one write of a destination holds."""

    key_pem: str
    cert_pem: str
    identity: str


def write_destination(dest: Path, ca: CA, *, kind: str = "ec", layout: str = "full", lifetime: float = 3600,
                      issued_at: float | None = None, sec1: bool = False,
                      key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | None = None,
                      cert: x509.Certificate | None = None) -> Issued:
    """Write tbot's credential files to `dest` for a new key and certificate (or the given ones).

    layout: `full` (every file tbot's Kubernetes output writes except kubeconfig.yaml), `identity` (only
    `identity`) or `pair` (only `tlscert` and `key`)."""
    dest.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = key if key is not None else new_key(kind)
    cert = cert if cert is not None else ca.issue(key, lifetime=lifetime, issued_at=issued_at)
    kpem, cpem, ca_pem = key_pem(key, sec1=sec1), cert_pem(cert), cert_pem(ca.cert)
    ssh_cert = ca.ssh_cert_line(key)
    ident = identity_text(kpem, cpem, [ca_pem], ssh_cert, [ca.ssh_ca_line()])
    files: dict[str, str] = {}
    if layout in ("full", "identity"):
        files["identity"] = ident
    if layout in ("full", "pair"):
        files.update({"key": kpem, "tlscert": cpem})
    if layout == "full":
        pub = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        files.update({"key.pub": pub.decode() + "\n", "key-cert.pub": ssh_cert + "\n",
                      "teleport-host-ca.crt": ca_pem, "teleport-user-ca.crt": ca_pem,
                      "teleport-database-ca.crt": ca_pem})
    for name, text in files.items():
        write_in_place(dest / name, text)
    return Issued(kpem, cpem, ident)


def write_kubeconfig(dest: Path, *, server: str, ca_pems: list[str], tls_server_name: str = "",
                     kube_cluster: str = "example-k8s-cluster", teleport_cluster: str = TELEPORT_CLUSTER,
                     tbot: str = "/usr/local/bin/tbot") -> str:
    """tbot's `kubeconfig.yaml` (kubernetes output, v1): one context `<teleport-cluster>-<kube-cluster>` whose
    user runs `tbot kube credentials`; returns the context name."""
    name = f"{teleport_cluster}-{kube_cluster}"
    cluster = {"certificate-authority-data": base64.b64encode("".join(ca_pems).encode()).decode(), "server": server}
    if tls_server_name:
        cluster["tls-server-name"] = tls_server_name
    doc = {"apiVersion": "v1", "clusters": [{"cluster": cluster, "name": name}],
           "contexts": [{"context": {"cluster": name, "user": name}, "name": name}],
           "current-context": name, "kind": "Config", "preferences": {},
           "users": [{"name": name, "user": {"exec": {
               "apiVersion": "client.authentication.k8s.io/v1beta1",
               "args": ["kube", "credentials", f"--destination-dir={dest}"],
               "command": tbot, "env": None, "provideClusterInfo": False}}}]}
    write_in_place(dest / "kubeconfig.yaml", yaml.safe_dump(doc))
    return name
