"""Permissions: private modes whatever the umask, and `kubectl-teleport init`'s POSIX ACLs for a bot user and
a reader user (as root, with users the test creates): the reader reads the credentials, another user cannot."""

from __future__ import annotations

import errno
import os
import pwd
import secrets
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from kubectl_teleport import errors, launcher
from kubectl_teleport.commands import init as initdir
from kubectl_teleport.errors import PluginError
from kubectl_teleport.store import acl as fsutil
from tests.conftest import bin_path
from tests.plugin_helpers import EXEC_INFO_V1, KUBE_CLUSTER, cert_of, join_args, make_due, web_trust

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT or not shutil.which("useradd") or not shutil.which("runuser"),
                                reason="needs root, useradd and runuser")


def _modes(root: Path) -> dict[str, int]:
    out = {}
    for p in [root, *root.rglob("*")]:
        out[str(p.relative_to(root))] = stat.S_IMODE(os.lstat(p).st_mode)
    return out


def test_state_is_private_whatever_the_umask(devcluster, tmp_path):
    bot = devcluster.add_bot()
    data = tmp_path / "deep" / "er" / "bot"
    cmd = [str(bin_path("kubectl-teleport")), "login", *join_args(bot), "--kube-cluster", KUBE_CLUSTER,
           "--data-dir", str(data)]
    out = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=lambda: os.umask(0), check=False,
                         env={**os.environ, **web_trust(devcluster)})
    assert out.returncode == 0, out.stderr
    make_due(data)
    cred = subprocess.run([str(bin_path("kubectl-teleport")), "credentials", "--data-dir", str(data),
                           "--kube-cluster", KUBE_CLUSTER], capture_output=True, text=True,
                          env={**os.environ, "KUBERNETES_EXEC_INFO": EXEC_INFO_V1},
                          preexec_fn=lambda: os.umask(0), check=False)
    assert cred.returncode == 0, cred.stderr
    modes = _modes(data)
    assert modes["."] == 0o700 and modes["kube"] == 0o700
    assert {k: v for k, v in modes.items() if k not in (".", "kube")} == \
        {k: 0o600 for k in modes if k not in (".", "kube")}
    assert {"identity.pem", "config.json", f"kube/{KUBE_CLUSTER}.cred", "kubeconfig.yaml"} <= set(modes)
    # the parents login created are private too (a world-writable parent would let others swap the dir)
    assert stat.S_IMODE((tmp_path / "deep").stat().st_mode) == 0o700


def test_acl_encoding_round_trips_and_is_sorted():
    value = fsutil.encode_acl([(fsutil.ACL_OTHER, 0, fsutil.ACL_UNDEFINED_ID), (fsutil.ACL_USER, 4, 1002),
                               (fsutil.ACL_USER_OBJ, 6, fsutil.ACL_UNDEFINED_ID), (fsutil.ACL_USER, 6, 1001),
                               (fsutil.ACL_MASK, 6, fsutil.ACL_UNDEFINED_ID),
                               (fsutil.ACL_GROUP_OBJ, 0, fsutil.ACL_UNDEFINED_ID)])
    assert value[:4] == b"\x02\x00\x00\x00" and len(value) == 4 + 6 * 8
    tags = [t for t, _, _ in fsutil.decode_acl(value)]
    assert tags == [1, 2, 2, 4, 0x10, 0x20]
    assert [i for t, _, i in fsutil.decode_acl(value) if t == 2] == [1001, 1002]
    with pytest.raises(ValueError):
        fsutil.decode_acl(b"\x01\x00\x00\x00")


def _no_acl_support(*_a, **_k):
    raise OSError(errno.EOPNOTSUPP, "Operation not supported")


def test_required_fails_clearly_without_acl_support(tmp_path, monkeypatch):
    me = pwd.getpwuid(os.geteuid()).pw_name
    monkeypatch.setattr(initdir.os, "setxattr", _no_acl_support)
    with pytest.raises(PluginError) as err:
        initdir.init_command(str(tmp_path / "d"), me, me, None, "required")
    assert err.value.code == errors.UNSAFE_STATE and "does not support POSIX ACLs" in str(err.value)
    assert not fsutil.has_acl(tmp_path / "d")
    lines = initdir.init_command(str(tmp_path / "d"), me, me, None, "try")
    assert any("not supported" in line for line in lines)
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o700


def test_init_rejects_unknown_users(tmp_path):
    with pytest.raises(PluginError) as err:
        initdir.init_command(str(tmp_path / "d"), "no-such-user-kt", "root", None, "try")
    assert err.value.code == errors.USAGE and "--bot-user" in str(err.value)
    assert not (tmp_path / "d").exists()


@pytest.fixture
def users():
    tag = secrets.token_hex(3)
    names = {role: f"kt{role[:3]}{tag}" for role in ("bot", "reader", "other")}
    for name in names.values():
        subprocess.run(["useradd", "-M", "-s", "/usr/sbin/nologin", name], check=True, capture_output=True)
    try:
        yield names
    finally:
        for name in names.values():
            subprocess.run(["userdel", name], check=False, capture_output=True)


def _preload() -> None:
    """Import everything the plugin may need before the child drops root: the test interpreter may live where
    other users cannot read (e.g. under /root), so the child must not import from disk after setuid."""
    import encodings.idna  # noqa: F401
    import http.client

    import cryptography.hazmat.primitives.asymmetric.rsa
    import cryptography.hazmat.primitives.serialization  # noqa: F401
    import filelock  # noqa: F401
    import h2.config
    import h2.connection
    import h2.errors
    import h2.events
    import h2.exceptions
    import h2.settings  # noqa: F401
    import httpx
    import platformdirs  # noqa: F401
    import yaml  # noqa: F401
    from google.protobuf import empty_pb2  # noqa: F401

    from kubectl_teleport import cli, entry, pki, policy  # noqa: F401
    from kubectl_teleport.commands import credentials, login, logout, start, status  # noqa: F401
    from kubectl_teleport.issuer import auth, certs, grpc, http, renewal, teleport, webapi  # noqa: F401
    from kubectl_teleport.outputs import kubeconfig  # noqa: F401
    from kubectl_teleport.proto import teleport_auth_pb2  # noqa: F401
    from kubectl_teleport.store import datadir, identity, lock  # noqa: F401
    httpx.Client(verify=http.tls_context(None)).close()


def _as(user: str, *args: str, env: dict | None = None, umask: int | None = None) -> subprocess.CompletedProcess:
    """Run the plugin's entry point as `user` in a forked child (setgroups/setgid/setuid), output captured."""
    import sys
    import traceback

    from kubectl_teleport import entry

    _preload()
    pw = pwd.getpwnam(user)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            rc = 99
            try:
                os.dup2(out.fileno(), 1)
                os.dup2(err.fileno(), 2)
                os.setgroups([])
                os.setgid(pw.pw_gid)
                os.setuid(pw.pw_uid)
                if umask is not None:
                    os.umask(umask)
                os.environ.update({"HOME": "/nonexistent", **(env or {})})
                sys.argv = ["kubectl-teleport", *args]
                sys.stdout = open(1, "w", closefd=False)
                sys.stderr = open(2, "w", closefd=False)
                rc = entry.main()
                sys.stdout.flush()
                sys.stderr.flush()
            except SystemExit as exc:
                rc = exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                os.write(2, traceback.format_exc().encode())
            finally:
                os._exit(rc)
        _, status = os.waitpid(pid, 0)
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(args, os.waitstatus_to_exitcode(status), out.read().decode(),
                                           err.read().decode())


def _cred(user: str, data: Path) -> subprocess.CompletedProcess:
    return _as(user, "credentials", "--data-dir", str(data), "--kube-cluster", KUBE_CLUSTER,
               env={"KUBERNETES_EXEC_INFO": EXEC_INFO_V1})


def shared_launcher(base: Path) -> Path:
    """A kubectl-teleport every user can run: the installed launcher in a prefix of its own, beside a link to the
    system's python3 of the same version, whose lib/ links to the test venv's site-packages (the venv's own
    interpreter may sit under a 0700 home)."""
    import sysconfig

    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    system = Path(f"/usr/bin/{version}")
    if not system.exists():
        pytest.skip(f"{system} is missing: no interpreter other users can run")
    (base / "bin").mkdir(mode=0o755)
    (base / "lib" / version).mkdir(mode=0o755, parents=True)
    (base / "lib" / version / "site-packages").symlink_to(sysconfig.get_paths()["purelib"])
    (base / "bin" / version).symlink_to(system)
    target = base / "bin" / "kubectl-teleport"
    shutil.copy(bin_path("kubectl-teleport"), target)
    assert launcher.point_at_interpreter(str(target), str(base / "bin" / version))  # as install.sh does
    assert launcher.interpreter(str(target)) == [str(base / "bin" / version), "-IS"]
    return target


@needs_root
def test_reader_reads_credentials_other_user_cannot(devcluster, users):
    base = Path(tempfile.mkdtemp(prefix="kt-acl-", dir="/tmp"))
    try:
        os.chmod(base, 0o711)
        data = base / "data"
        init = ["init", "--data-dir", str(data), "--bot-user", users["bot"], "--reader-user", users["reader"],
                "--acls", "required"]
        blocked = initdir.unreachable_for(os.path.realpath(sys.executable), pwd.getpwnam(users["bot"]))
        if blocked:  # the test venv's interpreter (e.g. a pyenv under a 0700 /root): init refuses, naming it
            refused = subprocess.run([str(bin_path("kubectl-teleport")), *init], capture_output=True, text=True,
                                     check=False)
            assert refused.returncode == errors.USAGE and blocked in refused.stderr, refused.stderr
            assert len(refused.stderr.strip().splitlines()) == 1 and not data.exists()
        out = subprocess.run([str(shared_launcher(base)), *init], capture_output=True, text=True, check=False,
                             env={**os.environ, "PATH": f"{base / 'bin'}:{os.environ['PATH']}"})
        assert out.returncode == 0, out.stderr
        bot_uid, reader_uid = (pwd.getpwnam(users[r]).pw_uid for r in ("bot", "reader"))
        assert data.stat().st_uid == bot_uid
        kube_acl = fsutil.decode_acl(os.getxattr(data / "kube", fsutil.ACL_ACCESS))
        assert (fsutil.ACL_USER, 5, reader_uid) in kube_acl and (fsutil.ACL_OTHER, 0, fsutil.ACL_UNDEFINED_ID) \
            in kube_acl and (fsutil.ACL_GROUP_OBJ, 0, fsutil.ACL_UNDEFINED_ID) in kube_acl
        assert os.getxattr(data / "kube", fsutil.ACL_DEFAULT)
        bot = devcluster.add_bot()
        web_ca = base / "web-ca.pem"  # the devcluster's web CA where the bot user can read it
        web_ca.write_text(Path(devcluster.web_ca_file).read_text())
        web_ca.chmod(0o644)
        login = _as(users["bot"], "login", *join_args(bot), "--kube-cluster", KUBE_CLUSTER, "--data-dir", str(data),
                    umask=0, env={"SSL_CERT_FILE": str(web_ca)})
        assert login.returncode == 0, login.stderr
        cred_file = data / "kube" / f"{KUBE_CLUSTER}.cred"
        assert stat.S_IMODE(cred_file.stat().st_mode) == 0o640  # 0600 + the ACL mask (group bits)
        assert stat.S_IMODE((data / "identity.pem").stat().st_mode) == 0o600  # no reader entry on the identity

        first = _cred(users["reader"], data)
        assert first.returncode == 0, first.stderr
        assert cert_of(first.stdout).startswith("-----BEGIN CERTIFICATE-----") and first.stderr == ""
        seen = _as(users["reader"], "status", "--data-dir", str(data))  # what the reader may see, no identity
        assert seen.returncode == 0 and "read-only for this user" in seen.stdout and KUBE_CLUSTER in seen.stdout
        for job in (["start", "--oneshot"], ["logout"]):  # the bot user's jobs: one line, exit 9
            refused = _as(users["reader"], *job, "--data-dir", str(data))
            assert refused.returncode == errors.UNSAFE_STATE and "bot user's job" in refused.stderr, refused.stderr
            assert len(refused.stderr.strip().splitlines()) == 1
        denied = _cred(users["other"], data)
        assert denied.returncode == errors.UNSAFE_STATE and denied.stdout == ""
        assert len(denied.stderr.strip().splitlines()) == 1 and "BEGIN" not in denied.stderr
        assert subprocess.run(["runuser", "-u", users["reader"], "--", "cat", str(data / "identity.pem")],
                              capture_output=True, check=False).returncode != 0

        # the bot renews: the atomic rewrite keeps the reader's entry, and the reader gets the new certificate
        acl_before = os.getxattr(cred_file, fsutil.ACL_ACCESS)
        make_due(data)
        renewed = _cred(users["bot"], data)
        assert renewed.returncode == 0, renewed.stderr
        assert cert_of(renewed.stdout) != cert_of(first.stdout)
        assert os.getxattr(cred_file, fsutil.ACL_ACCESS) == acl_before
        assert cred_file.stat().st_uid == bot_uid
        again = _cred(users["reader"], data)
        assert again.returncode == 0 and cert_of(again.stdout) == cert_of(renewed.stdout)

        # due: the reader still serves while valid (it cannot renew); expired: one clear line, exit 6
        make_due(data)
        due = _cred(users["reader"], data)
        assert due.returncode == 0 and cert_of(due.stdout) == cert_of(renewed.stdout)
        make_due(data, expired=True)
        expired = _cred(users["reader"], data)
        assert expired.returncode == errors.UNAVAILABLE and expired.stdout == ""
        assert len(expired.stderr.strip().splitlines()) == 1 and "kubectl-teleport start" in expired.stderr
        assert not list((data / "kube").glob(".*.tmp")) and not (data / "identity.pending.json").exists()
    finally:
        shutil.rmtree(base, ignore_errors=True)
