"""Bad input, table-driven: every case gets its documented exit code (kubectl_teleport/errors.py), one clear
line on stderr, no traceback, no token/key/certificate body in any output, and (for failures) an unchanged
data dir. Cases that the plugin repairs (a damaged cache is re-issued) exit 0 with a consistent cache."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.faults import TlsFaultServer
from kubectl_teleport import cache, errors, pki
from tests.devcluster_fixture import _stop_all, start_devcluster
from tests.plugin_helpers import EXEC_INFO_V1, KUBE_CLUSTER, ROLE, join_args, make_due, plugin, web_trust

V9 = '{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v9","spec":{}}'


@dataclass
class Ctx:
    dc: object
    template: Path
    secrets: list[str]
    tokens: list[str]


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    base = tmp_path_factory.mktemp("bad-input")
    dc = start_devcluster(base / "devcluster")
    bot = dc.add_bot()
    data = base / "template"
    out = plugin("login", *join_args(bot), "--kube-cluster", KUBE_CLUSTER, "--data-dir", str(data),
                 env=web_trust(dc))
    assert out.returncode == 0, out.stderr
    yield Ctx(dc, data, pem_bodies(data), [bot["token"]])
    _stop_all([dc])


def pem_bodies(data: Path) -> list[str]:
    """The base64 body lines of every key and certificate in a data dir (what must never be printed)."""
    found: set[str] = set()
    for p in data.rglob("*"):
        if p.is_file() and not p.is_symlink():
            text = p.read_bytes().decode(errors="replace").replace("\\n", "\n")
            found |= {line for line in text.splitlines() if len(line) >= 40 and line.isascii()
                      and all(c.isalnum() or c in "+/=" for c in line)}
    return sorted(found)


def tree_hash(root: Path) -> str:
    """Types, modes, link targets and contents of a tree (the lock file, created on demand, is left out)."""
    h = hashlib.sha256()
    if not os.path.lexists(root):
        return "absent"
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted([*dirnames, *filenames, "."]):
            p = Path(dirpath, name) if name != "." else Path(dirpath)
            if p.name == "lock":
                continue
            st = os.lstat(p)
            h.update(f"{p.relative_to(root)}|{st.st_mode:o}|".encode())
            if stat.S_ISLNK(st.st_mode):
                h.update(os.readlink(p).encode())
            elif stat.S_ISREG(st.st_mode):
                h.update(p.read_bytes())
    return h.hexdigest()


def cred(data: Path, cluster: str = KUBE_CLUSTER, info: str = EXEC_INFO_V1, *extra: str):
    return ["credentials", "--data-dir", str(data), "--kube-cluster", cluster, "--timeout", "5", *extra], \
        {"KUBERNETES_EXEC_INFO": info}


def _cache(data: Path) -> Path:
    return data / "kube" / f"{KUBE_CLUSTER}.cred"


def write(path: Path, data: bytes, mode: int = 0o600) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CREAT, mode)
    os.write(fd, data)
    os.close(fd)
    os.chmod(path, mode)


def expire(data: Path) -> None:
    make_due(data, expired=True)


def login_args(c: Ctx, data: Path, *, token: str | None = None, pin: str | None = None, proxy: str | None = None,
               extra: tuple[str, ...] = ()) -> list[str]:
    args = ["login", "--proxy", proxy or c.dc.teleport_proxy, "--kube-cluster", KUBE_CLUSTER, "--data-dir", str(data),
            "--role", ROLE]
    if token is not None:
        args += ["--token", token]
    args += ["--ca-pin", pin or c.dc.ca_pin, "--timeout", "5", *extra]
    return args


def web(c: Ctx) -> dict[str, str]:
    return web_trust(c.dc)


def _new_token(c: Ctx, name: str = "robot", ttl: str | None = None) -> str:
    token = c.dc.add_bot(name, token_ttl=ttl)["token"]
    c.tokens.append(token)
    return token


# each case: (setup and command) -> (args, env); expected exit code; whether the data dir must be unchanged
def c_exec_info(value: str) -> Callable:
    return lambda c, d: cred(d, info=value)


def c_cache(content: bytes) -> Callable:
    def run(c, d):
        write(_cache(d), content)
        return cred(d)
    return run


def c_mismatched_cache(c, d):
    entry = cache.decode(_cache(d).read_bytes())
    status = json.loads(entry.status)
    status["clientKeyData"] = pki.private_key_pem(pki.generate_key())
    body = json.dumps(status, separators=(",", ":")).encode()
    write(_cache(d), cache.encode(0, entry.expires_at, entry.not_after, body))  # due: the careful path decides
    return cred(d)


def c_file(rel: str, content: bytes | None = None, mode: int = 0o600, *, expired: bool = True) -> Callable:
    def run(c, d):
        if expired:
            expire(d)
        p = d / rel
        write(p, p.read_bytes() if content is None else content, mode)
        return cred(d)
    return run


def c_identity_of_another_key(c, d):
    expire(d)
    cert = (d / "identity.pem").read_text().split("-----BEGIN PRIVATE KEY-----")[0]
    write(d / "identity.pem", (cert + pki.private_key_pem(pki.generate_key())).encode())
    return cred(d)


def c_chmod(rel: str, mode: int) -> Callable:
    def run(c, d):
        os.chmod(d / rel, mode)
        return cred(d)
    return run


def c_symlink(rel: str, *, expired: bool = False) -> Callable:
    def run(c, d):
        if expired:
            expire(d)
        target = d.parent / f"{d.name}-elsewhere-{rel.replace('/', '_')}"
        os.rename(d / rel, target)
        os.symlink(target, d / rel)
        return cred(d)
    return run


def c_data_dir_symlink(c, d):
    real = d.parent / (d.name + "-real")
    os.rename(d, real)
    os.symlink(real, d)
    return cred(d)


def c_missing_dir(c, d):
    shutil.rmtree(d)
    return cred(d)


def c_empty_dir(c, d):
    shutil.rmtree(d)
    d.mkdir(mode=0o700)
    return cred(d)


def c_args(*args: str) -> Callable:
    return lambda c, d: ([a.replace("{D}", str(d)) for a in args], {"KUBERNETES_EXEC_INFO": EXEC_INFO_V1})


def c_login(**kw) -> Callable:
    def run(c, d):
        shutil.rmtree(d)
        token = kw.pop("token_fn")(c) if "token_fn" in kw else kw.pop("token", None)
        return login_args(c, d, token=token, **kw), web(c)
    return run


def c_reused_token(c, d):
    token = _new_token(c, "reuse-bot")
    first = plugin(*login_args(c, d.parent / (d.name + "-first"), token=token), env=web(c))
    assert first.returncode == 0, first.stderr
    shutil.rmtree(d)
    return login_args(c, d, token=token), web(c)


def c_expired_token(c, d):
    token = _new_token(c, "expiring-bot", ttl="1s")
    time.sleep(1.5)  # the token's own lifetime must pass; nothing races here (the server checks >= expiry)
    shutil.rmtree(d)
    return login_args(c, d, token=token), web(c)


def c_locked_bot(c, d):
    shutil.rmtree(d)
    token = _new_token(c, "locked-bot")
    out = plugin(*login_args(c, d, token=token), env=web(c))
    assert out.returncode == 0, out.stderr
    c.dc.admin("locks", "add", "locked-bot")
    expire(d)
    return cred(d)


def c_server_json(body: str, *, trusted: bool = True) -> Callable:
    """A web API answering every request with `body` (its certificate trusted, or not)."""
    def run(c, d):
        server = TlsFaultServer({"*": "json:" + body}, state_dir=c.dc.state_dir).__enter__()
        c.servers.append(server)  # type: ignore[attr-defined]
        shutil.rmtree(d)
        trust = d.parent / "fault-ca.pem"
        trust.write_text(server.ca_pem if trusted else c.dc.host_ca_pem.replace("CERTIFICATE", "NOTHING"))
        return login_args(c, d, token="x" * 32, proxy=server.address), {"SSL_CERT_FILE": str(trust)}
    return run


def c_pending_corrupt(c, d):
    make_due(d)
    write(d / "identity.pending.json", b'{"key_pem": 5')
    return cred(d)


CASES: list[tuple[str, int, bool, Callable]] = [
    ("exec-info-not-json", errors.USAGE, True, c_exec_info("{nope")),
    ("exec-info-unknown-version", errors.USAGE, True, c_exec_info(V9)),
    ("exec-info-array", errors.USAGE, True, c_exec_info("[1, 2]")),
    ("exec-info-other-kind", errors.USAGE, True, c_exec_info('{"kind":"Pod","apiVersion":"v1"}')),
    ("exec-info-version-number", errors.USAGE, True, c_exec_info('{"kind":"ExecCredential","apiVersion":1}')),
    ("exec-info-truncated", errors.USAGE, True, c_exec_info(EXEC_INFO_V1[:-3])),
    ("cache-empty", errors.OK, False, c_cache(b"")),
    ("cache-truncated", errors.OK, False, lambda c, d: c_cache(_cache(d).read_bytes()[:300])(c, d)),
    ("cache-corrupt-header", errors.OK, False, c_cache(b"KTC1 x y z 5\n{abc}")),
    ("cache-binary-garbage", errors.OK, False, c_cache(os.urandom(2000))),
    ("cache-mismatched-key", errors.OK, False, c_mismatched_cache),
    ("cache-symlink", errors.UNSAFE_STATE, True, c_symlink(f"kube/{KUBE_CLUSTER}.cred")),
    ("cache-readable-by-others", errors.UNSAFE_STATE, True, c_chmod(f"kube/{KUBE_CLUSTER}.cred", 0o644)),
    ("cache-is-a-directory", errors.UNSAFE_STATE, True,
     lambda c, d: (_cache(d).unlink(), _cache(d).mkdir(0o700), cred(d))[-1]),
    ("config-not-json", errors.NOT_LOGGED_IN, True, c_file("config.json", b"{not json")),
    ("config-wrong-types", errors.NOT_LOGGED_IN, True, c_file("config.json", b'{"proxy": 5}')),
    ("config-readable-by-group", errors.UNSAFE_STATE, True, c_file("config.json", None, 0o640)),
    ("identity-empty", errors.NOT_LOGGED_IN, True, c_file("identity.pem", b"")),
    ("identity-truncated", errors.NOT_LOGGED_IN, True,
     lambda c, d: c_file("identity.pem", (d / "identity.pem").read_bytes()[:500])(c, d)),
    ("identity-key-of-another-cert", errors.NOT_LOGGED_IN, True, c_identity_of_another_key),
    ("identity-readable-by-others", errors.UNSAFE_STATE, True, c_file("identity.pem", None, 0o604)),
    ("identity-symlink", errors.UNSAFE_STATE, True, c_symlink("identity.pem", expired=True)),
    ("data-dir-readable-by-group", errors.UNSAFE_STATE, True, c_chmod(".", 0o750)),
    ("kube-dir-readable-by-others", errors.UNSAFE_STATE, True, c_chmod("kube", 0o705)),
    ("kube-dir-symlink", errors.UNSAFE_STATE, True, c_symlink("kube")),
    ("data-dir-symlink", errors.UNSAFE_STATE, True, c_data_dir_symlink),
    ("data-dir-missing", errors.NOT_LOGGED_IN, True, c_missing_dir),
    ("data-dir-empty", errors.NOT_LOGGED_IN, True, c_empty_dir),
    ("pending-corrupt", errors.OK, False, c_pending_corrupt),
    ("unknown-kube-cluster", errors.ACCESS_DENIED, True, lambda c, d: cred(d, "no-such-cluster")),
    ("bad-kube-cluster-name", errors.USAGE, True, lambda c, d: cred(d, "../../etc/passwd")),
    ("missing-kube-cluster-flag", errors.USAGE, True, c_args("credentials", "--data-dir", "{D}")),
    ("unknown-flag", errors.USAGE, True, c_args("credentials", "--data-dir", "{D}", "--kube-cluster",
                                                KUBE_CLUSTER, "--frobnicate")),
    ("bad-timeout", errors.USAGE, True, c_args("credentials", "--data-dir", "{D}", "--kube-cluster",
                                               KUBE_CLUSTER, "--timeout", "soon")),
    ("bad-lock-timeout", errors.USAGE, True, c_args("credentials", "--data-dir", "{D}", "--kube-cluster",
                                                    KUBE_CLUSTER, "--lock-timeout", "1h")),
    ("bad-output-format", errors.USAGE, True, c_args("status", "--data-dir", "{D}", "-o", "yaml")),
    ("unknown-command", errors.USAGE, True, c_args("renew-everything")),
    ("login-bad-ttl", errors.USAGE, True, c_login(token="t" * 32, extra=("--ttl", "5x"))),
    ("login-ttl-too-short", errors.USAGE, True, c_login(token="t" * 32, extra=("--ttl", "10s"))),
    ("login-ttl-too-long", errors.USAGE, True, c_login(token="t" * 32, extra=("--ttl", "48h"))),
    ("login-bad-proxy", errors.USAGE, True, c_login(token="t" * 32, proxy="https://example.com/x")),
    ("login-bad-pin", errors.USAGE, True, c_login(token="t" * 32, pin="sha256:zz")),
    ("login-unknown-token", errors.IDENTITY_REJECTED, True, c_login(token="u" * 32)),
    ("login-reused-token", errors.IDENTITY_REJECTED, True, c_reused_token),
    ("login-expired-token", errors.IDENTITY_REJECTED, True, c_expired_token),
    ("locked-bot", errors.IDENTITY_REJECTED, True, c_locked_bot),
    # a web API that is not Teleport's, or not trusted: nothing is sent but the discovery GET
    ("server-find-wrong-types", errors.UNAVAILABLE, True, c_server_json('{"cluster_name": 5, "proxy": []}')),
    ("server-find-no-auth-route", errors.UNAVAILABLE, True,
     c_server_json('{"cluster_name": "x", "proxy": {"tls_routing_enabled": true}}')),
    ("server-find-not-object", errors.UNAVAILABLE, True, c_server_json('"just a string"')),
    ("server-web-cert-untrusted", errors.TRUST, True, c_server_json('{"cluster_name": "x"}', trusted=False)),
]


@pytest.mark.parametrize("name,code,unchanged,case", CASES, ids=[c[0] for c in CASES])
def test_bad_input(ctx, tmp_path, name, code, unchanged, case):
    data = tmp_path / "bot"
    shutil.copytree(ctx.template, data)
    ctx.servers = []
    try:
        args, env = case(ctx, data)
        before = tree_hash(data)
        out = plugin(*args, env=env)
    finally:
        for server in ctx.servers:
            server.__exit__(None, None, None)
    assert out.returncode == code, (out.returncode, out.stderr)
    assert "Traceback" not in out.stderr and "internal error" not in out.stderr
    everything = out.stdout + out.stderr
    for secret in [*ctx.tokens, *ctx.secrets, *pem_bodies(data)]:
        if code != errors.OK:
            assert secret not in everything, f"{name}: a secret was printed"
    if code == errors.OK:
        doc = json.loads(out.stdout)["status"]
        cert = pki.load_cert(doc["clientCertificateData"])
        key = pki.load_private_key(doc["clientKeyData"])
        assert pki.public_keys_equal(cert.public_key(), key.public_key()), "served a key that is not the cert's"
        entry = cache.decode(_cache(data).read_bytes())
        stored = json.loads(entry.status)
        assert pki.public_keys_equal(pki.load_cert(stored["clientCertificateData"]).public_key(),
                                     pki.load_private_key(stored["clientKeyData"]).public_key())
        assert out.stderr == "" or len(out.stderr.strip().splitlines()) == 1
    else:
        assert out.stdout == ""
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1, out.stderr
        assert lines[0].startswith("kubectl-teleport: error: ") and len(lines[0]) < 400
    if unchanged:
        assert tree_hash(data) == before, f"{name}: the data dir changed"
    assert not list(data.parent.rglob(".*.tmp"))
