"""`kubectl-teleport doctor`: a healthy setup is all ok (exit 0); each thing broken on purpose is named, with the
plugin's usual exit code when it is a problem, and no key or certificate body is ever printed."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from kubectl_teleport import errors
from tests.conftest import bin_path
from tests.plugin_helpers import KUBE_CLUSTER, credentials, edit_exec, login, make_due, plugin, web_trust


def doctor(dc, data: Path, *extra: str) -> tuple[subprocess.CompletedProcess, dict[str, dict]]:
    """Run doctor -o json; its rows by check name (the exec rows by their prefix)."""
    out = plugin("doctor", "--data-dir", str(data), "-o", "json", *extra, env=web_trust(dc))
    assert out.stdout, out.stderr
    report = json.loads(out.stdout)
    assert report["exit_code"] == out.returncode
    rows = {r["check"].split(" (")[0]: r for r in report["checks"]}
    return out, rows


@pytest.fixture
def daemon() -> Iterator:
    """Start `kubectl-teleport start --data-dir DIR` processes; each ended by its pid after the test."""
    procs: list[subprocess.Popen] = []

    def start(dc, data: Path | None, argv: list[str] | None = None, env: dict | None = None) -> subprocess.Popen:
        argv = argv or [str(bin_path("kubectl-teleport")), "start"]
        proc = subprocess.Popen([*argv, *(["--data-dir", str(data)] if data else [])],
                                env={**(os.environ if env is None else env), **web_trust(dc)},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=30)


def _secrets(data: Path) -> list[str]:
    cred = json.loads(credentials(data).stdout)["status"]
    return [cred["clientCertificateData"].splitlines()[1], cred["clientKeyData"].splitlines()[1],
            (data / "identity.pem").read_text().split("-----BEGIN")[2].splitlines()[1]]


def test_healthy_setup_is_all_ok_and_prints_no_secret(devcluster, tmp_path, daemon):
    data = tmp_path / "bot"
    login(devcluster, data)
    daemon(devcluster, data)
    out, rows = doctor(devcluster, data)
    assert out.returncode == 0, out.stdout
    assert {r["level"] for r in rows.values()} == {"ok"}, out.stdout
    assert set(rows) >= {"data dir", "temp files", "exec command", "identity", f"certificate {KUBE_CLUSTER}",
                         "cluster", "clock", "auth TLS", "lock", "daemon", "kubectl call"}
    assert "Teleport " in rows["cluster"]["message"] and "suite" in rows["cluster"]["message"]
    assert "generation 1" in rows["identity"]["message"]
    assert devcluster.ca_pin in rows["auth TLS"]["message"] and "ALPN teleport-auth@" in rows["auth TLS"]["message"]
    assert rows["lock"]["message"].startswith("not locked")
    assert "ms" in rows["kubectl call"]["message"]
    text = plugin("doctor", "--data-dir", str(data), env=web_trust(devcluster))
    assert text.returncode == 0 and len(text.stdout.splitlines()) == len(rows)
    for secret in _secrets(data):
        assert secret not in out.stdout + out.stderr + text.stdout + text.stderr


def test_no_daemon_is_a_warning(devcluster, tmp_path):
    data = tmp_path / "bot"
    login(devcluster, data)
    out, rows = doctor(devcluster, data)
    assert out.returncode == 0
    assert rows["daemon"]["level"] == "warning" and "kubectl-teleport start" in rows["daemon"]["message"]


def test_the_kubeconfig_found_from_its_path_alone(devcluster, tmp_path):
    data = tmp_path / "bot"
    login(devcluster, data)
    out = plugin("doctor", "--kubeconfig", str(data / "kubeconfig.yaml"), env=web_trust(devcluster))
    assert out.returncode == 0, out.stdout
    assert f"{data}: owner" in out.stdout and "ExecCredential in" in out.stdout


def test_a_pyenv_shim_as_exec_command_is_named(devcluster, tmp_path):
    data = tmp_path / "bot"
    login(devcluster, data)
    kubeconfig = data / "kubeconfig.yaml"
    real = yaml.safe_load(kubeconfig.read_text())["users"][0]["user"]["exec"]["command"]
    shim = tmp_path / ".pyenv" / "shims" / "kubectl-teleport"
    shim.parent.mkdir(parents=True)
    shim.write_text(f'#!/usr/bin/env bash\nexec "{real}" "$@"\n')
    shim.chmod(0o755)
    edit_exec(kubeconfig, lambda ex: ex.update(command=str(shim)))
    out, rows = doctor(devcluster, data)
    assert rows["exec command"]["level"] == "warning" and "shim" in rows["exec command"]["message"], out.stdout
    assert rows["kubectl call"]["level"] == "ok"  # it still works, only slower


def test_a_missing_exec_command_is_a_problem(devcluster, tmp_path):
    data = tmp_path / "bot"
    login(devcluster, data)
    edit_exec(data / "kubeconfig.yaml", lambda ex: ex.update(command=str(tmp_path / "gone" / "kubectl-teleport")))
    out, rows = doctor(devcluster, data)
    assert out.returncode == errors.NOT_LOGGED_IN
    assert rows["exec command"]["level"] == "problem" and "does not exist" in rows["exec command"]["message"]
    assert "kubectl call" not in rows


def test_a_shared_data_dir_is_a_problem(devcluster, tmp_path):
    data = tmp_path / "bot"
    login(devcluster, data)
    data.chmod(0o755)
    out, rows = doctor(devcluster, data)
    assert out.returncode == errors.UNSAFE_STATE
    assert rows["data dir"]["level"] == "problem" and "755" in rows["data dir"]["message"], out.stdout


def test_a_stray_temp_file_is_named(devcluster, tmp_path):
    data = tmp_path / "bot"
    login(devcluster, data)
    stray = data / ".identity.pem.999999999.tmp"
    stray.write_bytes(b"x")
    stray.chmod(0o600)
    _out, rows = doctor(devcluster, data)
    assert rows["temp files"]["level"] == "warning" and str(stray) in rows["temp files"]["message"]


def test_an_expired_certificate_is_named(devcluster, tmp_path):
    data = tmp_path / "bot"
    login(devcluster, data)
    make_due(data, expired=True)
    out, rows = doctor(devcluster, data)
    cert = rows[f"certificate {KUBE_CLUSTER}"]
    assert cert["level"] == "warning" and "expired" in cert["message"], out.stdout
    assert rows["kubectl call"]["level"] == "ok"  # the call renewed it


def test_an_unreachable_cluster_is_a_problem(devcluster, tmp_path):
    data = tmp_path / "bot"
    login(devcluster, data)
    cfg = json.loads((data / "config.json").read_text())
    cfg["proxy"] = "127.0.0.1:1"
    (data / "config.json").write_text(json.dumps(cfg))
    out, rows = doctor(devcluster, data)
    assert out.returncode == errors.UNAVAILABLE, out.stdout
    assert rows["cluster"]["level"] == "problem" and "127.0.0.1:1" in rows["cluster"]["message"]
    assert rows["kubectl call"]["level"] == "ok"  # the cached certificate still serves


def test_a_clock_ten_minutes_off_is_a_problem(devcluster_factory, tmp_path):
    dc = devcluster_factory()
    skewed = devcluster_factory("--clock-offset=10m")
    data = tmp_path / "bot"
    login(dc, data)
    cfg = json.loads((data / "config.json").read_text())
    cfg["proxy"] = skewed.teleport_proxy
    (data / "config.json").write_text(json.dumps(cfg))
    out, rows = doctor(skewed, data)
    assert out.returncode == errors.TRUST, out.stdout
    assert rows["clock"]["level"] == "problem" and "behind" in rows["clock"]["message"], out.stdout


def test_a_clock_forty_seconds_off_is_a_warning(devcluster_factory, tmp_path):
    dc = devcluster_factory("--clock-offset=40s")
    data = tmp_path / "bot"
    login(dc, data)
    out, rows = doctor(dc, data)
    assert out.returncode == 0, out.stdout
    assert rows["clock"]["level"] == "warning" and "behind" in rows["clock"]["message"], out.stdout


def test_an_expired_identity_is_a_problem_with_exit_4(devcluster, tmp_path):
    data = tmp_path / "bot"
    login(devcluster, data)
    ident = data / "identity.pem"
    lines = ident.read_text().split("\n", 1)
    assert lines[0].startswith("received-at: ")
    ident.write_text(f"received-at: {int(lines[0].split()[1]) - 7200}\n{lines[1]}")  # arrived 2 h earlier
    out, rows = doctor(devcluster, data)
    assert out.returncode == errors.IDENTITY_REJECTED, out.stdout
    assert rows["identity"]["level"] == "problem" and "expired" in rows["identity"]["message"]
    assert "new token" in rows["identity"]["message"]


def test_a_renewal_in_doubt_is_named(devcluster, tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from kubectl_teleport.store import identity
    from kubectl_teleport.store.datadir import DataDir

    data = tmp_path / "bot"
    login(devcluster, data)
    dd = DataDir(data)
    key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    identity.save_pending(dd, identity.Pending(key, identity.load(dd).generation, 1.0e9, sent=True))
    out, rows = doctor(devcluster, data)
    assert out.returncode == 0, out.stdout
    assert rows["identity"]["level"] == "warning" and "in doubt" in rows["identity"]["message"], out.stdout
    assert "BEGIN" not in out.stdout
    with dd.acquire(5):  # the same record while a renewal holds the lock: under way, not in doubt
        out, rows = doctor(devcluster, data)
    assert rows["identity"]["level"] == "ok" and "in doubt" not in rows["identity"]["message"], out.stdout


def test_a_start_without_data_dir_is_found_by_the_data_dir_it_resolves(devcluster, tmp_path, daemon):
    """`start` with no --data-dir: its data dir comes from its environment (the user data dir under its HOME, or
    $KUBECTL_TELEPORT_DATA_DIR), which doctor reads from /proc/PID/environ; `python -m kubectl_teleport` too."""
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_DATA_HOME", "KUBECTL_TELEPORT_DATA_DIR")}
    env["HOME"] = str(home)
    data = home / ".local" / "share" / "kubectl-teleport" / devcluster.teleport_proxy.replace(":", "_")
    login(devcluster, data)
    other = tmp_path / "other"
    login(devcluster, other)
    proc = daemon(devcluster, None, env=env)  # the installed launcher, `start` alone
    _out, rows = doctor(devcluster, data)
    assert rows["daemon"]["level"] == "ok" and f"pid {proc.pid}" in rows["daemon"]["message"], rows["daemon"]
    _out, rows = doctor(devcluster, other)  # another data dir: that process does not renew it
    assert rows["daemon"]["level"] == "warning", rows["daemon"]
    assert proc.poll() is None
    python = str(Path(bin_path("kubectl-teleport")).parent / "python")
    module = daemon(devcluster, None, argv=[python, "-m", "kubectl_teleport", "start"],
                    env={**env, "KUBECTL_TELEPORT_DATA_DIR": str(other)})
    _out, rows = doctor(devcluster, other)
    assert rows["daemon"]["level"] == "ok" and f"pid {module.pid}" in rows["daemon"]["message"], rows["daemon"]
    assert module.poll() is None


def test_a_systemd_unit_for_the_data_dir_counts_as_the_daemon(tmp_path, monkeypatch):
    from kubectl_teleport.commands import doctor as doctor_mod

    units = tmp_path / "units"
    units.mkdir()
    data = tmp_path / "bot"
    (units / "other.service").write_text("[Service]\nExecStart=/usr/bin/kubectl-teleport start --data-dir /x\n")
    monkeypatch.setattr(doctor_mod, "SYSTEMD_DIRS", (str(units),))
    assert doctor_mod.unit_files(data) == []
    (units / "kt.service").write_text(plugin("systemd-unit", "--data-dir", str(data)).stdout)  # what we ship
    assert doctor_mod.unit_files(data) == [f"{units}/kt.service"]
    (units / "kt.service").write_text(f"[Service]\nExecStart=/opt/kt/bin/kubectl-teleport start --data-dir {data}2\n")
    assert doctor_mod.unit_files(data) == []  # another data dir whose name starts with this one's


def test_the_reader_user_of_an_init_acl_must_be_able_to_run_the_exec_command(devcluster, tmp_path):
    import pwd
    import shutil

    from kubectl_teleport.store import acl

    try:
        reader = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user nobody")
    if os.geteuid() == reader.pw_uid:
        pytest.skip("runs as nobody")
    data = tmp_path / "bot"
    login(devcluster, data)
    undef = acl.ACL_UNDEFINED_ID
    try:  # what `init --reader-user nobody` gives the data dir: a named user entry
        acl.set_acl(data, acl.ACL_ACCESS, acl.encode_acl([
            (acl.ACL_USER_OBJ, 7, undef), (acl.ACL_USER, 5, reader.pw_uid), (acl.ACL_GROUP_OBJ, 0, undef),
            (acl.ACL_MASK, 5, undef), (acl.ACL_OTHER, 0, undef)]))
    except OSError:
        pytest.skip("no POSIX ACLs here")
    kubeconfig = data / "kubeconfig.yaml"
    real = yaml.safe_load(kubeconfig.read_text())["users"][0]["user"]["exec"]["command"]
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    copy = private / "kubectl-teleport"
    shutil.copy2(real, copy)  # runs fine for us, but `nobody` cannot search the 0700 directory
    edit_exec(kubeconfig, lambda ex: ex.update(command=str(copy)))
    out, rows = doctor(devcluster, data)
    assert rows["data dir"]["level"] == "ok" and "nobody" in rows["data dir"]["message"], out.stdout
    assert out.returncode == errors.UNSAFE_STATE, out.stdout
    row = rows["exec command"]
    assert row["level"] == "problem" and "nobody" in row["message"] and str(private) in row["message"], out.stdout


def _set_config(data: Path, **fields: object) -> None:
    cfg = json.loads((data / "config.json").read_text())
    cfg.update(fields)
    (data / "config.json").write_text(json.dumps(cfg))


def test_a_locked_bot_is_a_problem_with_exit_4(devcluster, tmp_path):
    data = tmp_path / "bot"
    login(devcluster, data)
    devcluster.admin("locks", "add", "robot")
    out, rows = doctor(devcluster, data)
    assert out.returncode == errors.IDENTITY_REJECTED, out.stdout
    lock = rows["lock"]
    assert lock["level"] == "problem" and "the bot is locked" in lock["message"], out.stdout
    assert 'lock targeting User:"bot-robot" is in force' in lock["message"] and "tctl rm lock/" in lock["message"]
    assert "new join token" in lock["message"]
    assert rows["auth TLS"]["level"] == "ok"  # the TLS handshake went through: the refusal is the server's
    assert rows["kubectl call"]["level"] == "ok"  # the cached certificate is still served until it expires
    devcluster.admin("locks", "rm", "robot")
    out, rows = doctor(devcluster, data)
    assert out.returncode == 0 and rows["lock"]["level"] == "ok", out.stdout


def test_an_unreachable_auth_service_is_a_warning(devcluster, tmp_path):
    data = tmp_path / "bot"
    login(devcluster, data)
    _set_config(data, auth_server="127.0.0.1:1")
    out, rows = doctor(devcluster, data)
    assert out.returncode == 0, out.stdout
    assert rows["auth TLS"]["level"] == "warning" and "127.0.0.1:1" in rows["auth TLS"]["message"], out.stdout
    assert rows["lock"]["level"] == "warning" and "not asked" in rows["lock"]["message"]


def test_an_auth_service_of_another_ca_is_a_trust_problem(devcluster_factory, tmp_path):
    """Same cluster name, another host CA: what a CA rotation (or someone posing as the cluster) looks like."""
    dc = devcluster_factory()
    rotated = devcluster_factory()
    assert rotated.cluster_name == dc.cluster_name and rotated.ca_pin != dc.ca_pin
    data = tmp_path / "bot"
    login(dc, data)
    _set_config(data, proxy=rotated.teleport_proxy)
    out, rows = doctor(rotated, data)
    assert out.returncode == errors.TRUST, out.stdout
    row = rows["auth TLS"]
    assert row["level"] == "problem" and "not the one pinned at login" in row["message"], out.stdout
    assert dc.ca_pin in row["message"] and rotated.ca_pin in row["message"] and "--ca-pin" in row["message"]
    assert rows["lock"]["level"] == "warning"


def test_an_auth_service_of_another_cluster_is_named(devcluster_factory, tmp_path):
    dc = devcluster_factory()
    other = devcluster_factory("--cluster-name=elsewhere")
    data = tmp_path / "bot"
    login(dc, data)
    _set_config(data, auth_server=other.auth_server)
    out, rows = doctor(dc, data)
    assert out.returncode == errors.TRUST, out.stdout
    row = rows["auth TLS"]
    assert row["level"] == "problem" and "another cluster answers" in row["message"], out.stdout
    assert "elsewhere" in row["message"] and other.auth_server in row["message"]
    _set_config(data, auth_server="", proxy=other.teleport_proxy)  # its proxy: the web API says it first
    out, rows = doctor(other, data)
    assert out.returncode == errors.TRUST, out.stdout
    assert rows["cluster"]["level"] == "problem" and "'elsewhere'" in rows["cluster"]["message"], out.stdout
    assert rows["auth TLS"]["level"] == "problem" and "another cluster" in rows["auth TLS"]["message"], out.stdout


def test_auth_tls_failing_only_on_the_clock_is_named_as_clock_skew(devcluster_factory, tmp_path):
    """The same cluster (state dir) restarted with its clock 10 minutes ahead: its certificates are not valid
    yet by ours, so the auth route names the clocks, not the CA."""
    from harness.devcluster import start_devcluster

    dc = devcluster_factory()
    data = tmp_path / "bot"
    login(dc, data)
    dc.stop()
    base = dc.state_dir.parent
    (base / "ready.json").unlink(missing_ok=True)  # the stopped server may have removed it
    ahead = start_devcluster(base, "--clock-offset=10m")
    try:
        _set_config(data, proxy=ahead.teleport_proxy)
        out, rows = doctor(ahead, data)
    finally:
        ahead.stop()
    assert out.returncode == errors.TRUST, out.stdout
    row = rows["auth TLS"]
    assert row["level"] == "problem" and "clock" in row["message"] and "pinned" not in row["message"], out.stdout


def test_a_bot_locked_for_a_renewal_from_a_stale_copy_is_named(devcluster, tmp_path):
    """The identity renewed (generation 2), then renewed again from a copy of generation 1: Teleport locks the
    bot. Doctor learns it from the cluster (Ping as the bot), not from anything on disk."""
    data = tmp_path / "bot"
    login(devcluster, data)
    copy = (data / "identity.pem").read_bytes()
    assert plugin("start", "--oneshot", "--data-dir", str(data), env=web_trust(devcluster)).returncode == 0
    (data / "identity.pem").write_bytes(copy)  # the stale copy (generation 1) back in place, still valid
    stale = plugin("start", "--oneshot", "--data-dir", str(data), env=web_trust(devcluster))
    assert stale.returncode == errors.IDENTITY_REJECTED and "generation mismatch" in stale.stderr, stale.stderr
    out, rows = doctor(devcluster, data)
    assert out.returncode == errors.IDENTITY_REJECTED, out.stdout
    assert rows["identity"]["level"] == "ok" and "generation 1" in rows["identity"]["message"], out.stdout
    assert rows["lock"]["level"] == "problem" and "the bot is locked" in rows["lock"]["message"], out.stdout
