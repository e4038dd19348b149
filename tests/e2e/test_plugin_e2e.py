"""End to end with real parts: the installed plugin, a devcluster, the real kubectl 1.37.1 and the Python
kubernetes client."""

from __future__ import annotations

import base64
import json
import os
from concurrent.futures import ThreadPoolExecutor

import yaml

from kubectl_teleport import errors, execcred
from tests.plugin_helpers import (
    EXEC_INFO_V1,
    HOT_PATH,
    KUBE_CLUSTER,
    cert_of,
    credentials,
    edit_exec,
    hit_imports,
    imported,
    join_args,
    kubectl_run,
    login,
    make_due,
    plugin,
    python_of,
    web_trust,
)


def test_kubectl_lists_pods_and_whoami_through_the_plugin(devcluster, kubectl, tmp_path):
    data = tmp_path / "bot"
    out = login(devcluster, data)
    kubeconfig = data / "kubeconfig.yaml"
    assert str(kubeconfig) in out.stdout
    assert oct(kubeconfig.stat().st_mode & 0o777) == "0o600"
    pods = kubectl_run(kubectl, kubeconfig, tmp_path, "get", "pods", "-n", "demo")
    assert pods.returncode == 0, pods.stderr
    assert pods.stdout.startswith("NAME")
    assert len(pods.stdout.strip().splitlines()) >= 3
    who = kubectl_run(kubectl, kubeconfig, tmp_path, "auth", "whoami", "-o", "json")
    assert who.returncode == 0, who.stderr
    info = json.loads(who.stdout)["status"]["userInfo"]
    assert info["username"] == "alice"
    assert "example" in info["groups"]
    denied = kubectl_run(kubectl, kubeconfig, tmp_path, "get", "pods", "-n", "kube-system")
    assert denied.returncode != 0
    assert "Forbidden" in denied.stderr and 'User "alice" cannot list resource "pods"' in denied.stderr


def test_kubeconfig_exec_stanza_is_what_kubectl_needs(devcluster, tmp_path):
    data = tmp_path / "bot"
    login(devcluster, data)
    doc = yaml.safe_load((data / "kubeconfig.yaml").read_text())
    name = f"{devcluster.cluster_name}-{KUBE_CLUSTER}"
    assert doc["current-context"] == name
    exec_ = doc["users"][0]["user"]["exec"]
    assert exec_["apiVersion"] == execcred.V1 and exec_["interactiveMode"] == "Never"
    assert os.path.isabs(exec_["command"]) and exec_["command"].endswith("kubectl-teleport")
    assert exec_["args"] == ["credentials", "--data-dir", str(data), "--kube-cluster", KUBE_CLUSTER]
    assert exec_["installHint"]
    cluster = doc["clusters"][0]["cluster"]
    # TLS routing: the proxy's own address; the SNI picks the Kubernetes route; the CA is the host CA
    assert cluster["server"] == f"https://{devcluster.teleport_proxy}"
    assert cluster["tls-server-name"] == "kube-teleport-proxy-alpn.teleport.cluster.local"  # an IP proxy
    assert base64.b64decode(cluster["certificate-authority-data"]).decode() == devcluster.host_ca_pem


def test_v1beta1_exec_stanza_works(devcluster, kubectl, tmp_path):
    data = tmp_path / "bot"
    login(devcluster, data)
    kubeconfig = data / "kubeconfig.yaml"

    def beta(exec_: dict) -> None:
        exec_["apiVersion"] = execcred.V1BETA1
        exec_.pop("interactiveMode")

    edit_exec(kubeconfig, beta)
    pods = kubectl_run(kubectl, kubeconfig, tmp_path, "get", "pods", "-n", "demo", "-o", "name")
    assert pods.returncode == 0, pods.stderr
    assert all(line.startswith("pod/") for line in pods.stdout.split())


def test_python_kubernetes_client_lists_pods(devcluster, tmp_path):
    from kubernetes import client, config

    data = tmp_path / "bot"
    login(devcluster, data)
    api_client = config.new_client_from_config(config_file=str(data / "kubeconfig.yaml"))
    pods = client.CoreV1Api(api_client).list_namespaced_pod("demo")
    assert len(pods.items) >= 2
    assert all(p.metadata.namespace == "demo" for p in pods.items)


def test_merge_keeps_other_contexts(devcluster, kubectl, tmp_path):
    existing = tmp_path / "config"
    other = {"apiVersion": "v1", "kind": "Config", "current-context": "other",
             "clusters": [{"name": "other", "cluster": {"server": "https://other.example:6443"}}],
             "users": [{"name": "other", "user": {"token": "abc"}}],
             "contexts": [{"name": "other", "context": {"cluster": "other", "user": "other"}}],
             "preferences": {}}
    existing.write_text(yaml.safe_dump(other))
    bot = devcluster.add_bot()
    out = plugin("login", *join_args(bot), "--kube-cluster", KUBE_CLUSTER, "--data-dir", str(tmp_path / "bot"),
                 "--merge", env={"KUBECONFIG": f"{existing}{os.pathsep}{tmp_path / 'second'}", **web_trust(devcluster)})
    assert out.returncode == 0, out.stderr
    doc = yaml.safe_load(existing.read_text())
    names = {c["name"] for c in doc["contexts"]}
    ours = f"{devcluster.cluster_name}-{KUBE_CLUSTER}"
    assert names == {"other", ours}
    assert doc["current-context"] == "other"
    assert doc["users"][0] == other["users"][0]
    assert oct(existing.stat().st_mode & 0o777) == "0o600"
    pods = kubectl_run(kubectl, existing, tmp_path, "--context", ours, "get", "pods", "-n", "demo")
    assert pods.returncode == 0, pods.stderr
    # logout removes what login wrote and nothing else
    assert plugin("logout", "--data-dir", str(tmp_path / "bot")).returncode == 0
    doc = yaml.safe_load(existing.read_text())
    assert {c["name"] for c in doc["contexts"]} == {"other"}
    assert sorted(p.name for p in (tmp_path / "bot").iterdir()) == ["lock"]  # the lock file stays, no key


def test_near_expiry_cert_triggers_exactly_one_issuance(devcluster, kubectl, tmp_path):
    data = tmp_path / "bot"
    login(devcluster, data)
    kubeconfig = data / "kubeconfig.yaml"
    first = cert_of(credentials(data).stdout)
    assert cert_of(credentials(data).stdout) == first  # byte-identical until a renewal
    before = devcluster.stats()["kube_certs_issued"]
    make_due(data)
    for _ in range(3):
        assert kubectl_run(kubectl, kubeconfig, tmp_path, "get", "pods", "-n", "demo").returncode == 0
    assert devcluster.stats()["kube_certs_issued"] == before + 1
    assert cert_of(credentials(data).stdout) != first


def test_concurrent_calls_on_uncached_cluster_issue_once(devcluster, tmp_path):
    data = tmp_path / "bot"
    login(devcluster, data)
    (data / "kube" / f"{KUBE_CLUSTER}.cred").unlink()
    before = devcluster.stats()["kube_certs_issued"]
    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(lambda _: credentials(data), range(20)))
    assert [r.returncode for r in results] == [0] * 20, [r.stderr for r in results if r.returncode]
    assert len({cert_of(r.stdout) for r in results}) == 1
    assert devcluster.stats()["kube_certs_issued"] == before + 1


def test_wrong_pin_sends_no_token_and_token_still_works(devcluster, tmp_path):
    bot = devcluster.add_bot()
    wrong = "sha256:" + "0" * 64
    out = plugin("login", *join_args(bot, pin=False), "--ca-pin", wrong, "--kube-cluster", KUBE_CLUSTER,
                 "--data-dir", str(tmp_path / "bot"), env=web_trust(devcluster))
    assert out.returncode == errors.TRUST
    assert wrong in out.stderr and devcluster.ca_pin in out.stderr
    assert bot["token"] not in out.stderr + out.stdout
    assert len(out.stderr.strip().splitlines()) == 1
    assert devcluster.stats()["joins"] == 0
    login(devcluster, tmp_path / "bot", bot=bot)
    assert devcluster.stats()["joins"] == 1


def test_relogin_replaces_identity_and_login_without_token_adds_cluster(devcluster, kubectl, tmp_path):
    data = tmp_path / "bot"
    login(devcluster, data)
    login(devcluster, data)  # a new token: a new identity at generation 1
    status = json.loads(plugin("status", "--data-dir", str(data), "-o", "json").stdout)
    assert status["identity"]["generation"] == 1
    devcluster.admin("kube", "add", "second-cluster", "--labels", "env=dev")
    out = plugin("login", "--data-dir", str(data), "--kube-cluster", "second-cluster")
    assert out.returncode == 0, out.stderr
    doc = yaml.safe_load((data / "kubeconfig.yaml").read_text())
    assert {c["name"] for c in doc["contexts"]} == {f"{devcluster.cluster_name}-{KUBE_CLUSTER}",
                                                   f"{devcluster.cluster_name}-second-cluster"}
    status = json.loads(plugin("status", "--data-dir", str(data), "-o", "json").stdout)
    assert {c["name"] for c in status["kube_clusters"]} == {KUBE_CLUSTER, "second-cluster"}
    assert all(c["cached"] for c in status["kube_clusters"])


def test_uncached_cluster_the_bot_may_use_is_issued_on_first_use(devcluster, tmp_path):
    data = tmp_path / "bot"
    login(devcluster, data)
    devcluster.admin("kube", "add", "third", "--labels", "env=dev")
    out = credentials(data, "third")
    assert out.returncode == 0, out.stderr
    assert cert_of(out.stdout).startswith("-----BEGIN CERTIFICATE-----")
    unknown = credentials(data, "no-such-cluster")
    assert unknown.returncode == errors.ACCESS_DENIED
    assert len(unknown.stderr.strip().splitlines()) == 1


def test_renewal_failure_with_valid_cache_warns_and_serves(devcluster, tmp_path):
    data = tmp_path / "bot"
    login(devcluster, data)
    cached = cert_of(credentials(data).stdout)
    devcluster.stop()
    make_due(data)
    out = credentials(data, timeout=60)
    assert out.returncode == 0
    assert cert_of(out.stdout) == cached
    assert len(out.stderr.strip().splitlines()) == 1 and "warning" in out.stderr
    make_due(data, expired=True)
    failed = credentials(data, timeout=60)
    assert failed.returncode == errors.UNAVAILABLE
    assert failed.stdout == ""
    assert len(failed.stderr.strip().splitlines()) == 1 and "Traceback" not in failed.stderr


def test_status_and_exec_info_versions(devcluster, tmp_path):
    data = tmp_path / "bot"
    login(devcluster, data)
    text = plugin("status", "--data-dir", str(data))
    assert text.returncode == 0 and "generation 1" in text.stdout and "kubectl gets: cached" in text.stdout
    beta = credentials(data, info="")
    assert json.loads(beta.stdout)["apiVersion"] == execcred.V1BETA1
    assert json.loads(credentials(data, info=EXEC_INFO_V1).stdout)["apiVersion"] == execcred.V1
    bad = credentials(data, info='{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v9"}')
    assert bad.returncode == errors.USAGE and bad.stdout == ""


def test_not_logged_in_is_one_clear_line(tmp_path):
    out = plugin("credentials", "--data-dir", str(tmp_path / "nothing"), "--kube-cluster", KUBE_CLUSTER)
    assert out.returncode == errors.NOT_LOGGED_IN
    assert out.stderr.count("\n") == 1 and "kubectl-teleport login" in out.stderr


def test_cache_hit_imports_only_our_hot_path_modules(devcluster, tmp_path):
    """Exactly what kubectl runs (the kubeconfig's exec command: the launcher, its interpreter with -I -S)
    imports nothing beyond the interpreter's own start-up but our three hot-path modules: no cryptography, httpx,
    filelock, platformdirs, yaml, json, re, pathlib, not even os."""
    data = tmp_path / "bot"
    login(devcluster, data)
    exec_ = yaml.safe_load((data / "kubeconfig.yaml").read_text())["users"][0]["user"]["exec"]
    assert python_of(exec_["command"])[1:] == ["-IS"]
    env = {**os.environ, "KUBERNETES_EXEC_INFO": EXEC_INFO_V1 + "\n"}
    hit, mods = hit_imports(exec_, env)
    assert hit.returncode == 0 and json.loads(hit.stdout)["kind"] == "ExecCredential"
    assert mods == HOT_PATH


def test_lock_held_elsewhere_serves_valid_cert_at_once_and_bounds_the_wait(devcluster, tmp_path):
    import time

    from kubectl_teleport.store.datadir import DataDir

    data = tmp_path / "bot"
    login(devcluster, data)
    cached = cert_of(credentials(data).stdout)
    lock = DataDir(data).acquire(30)  # another process is "renewing"
    try:
        make_due(data)
        started = time.monotonic()
        out = credentials(data)
        assert out.returncode == 0 and out.stderr == ""
        assert cert_of(out.stdout) == cached
        assert time.monotonic() - started < 5
        make_due(data, expired=True)
        waited = plugin("credentials", "--data-dir", str(data), "--kube-cluster", KUBE_CLUSTER,
                        "--lock-timeout", "1", env={"KUBERNETES_EXEC_INFO": EXEC_INFO_V1})
        assert waited.returncode == errors.LOCK_TIMEOUT
        assert len(waited.stderr.strip().splitlines()) == 1 and "lock" in waited.stderr
    finally:
        lock.release()
    assert credentials(data).returncode == 0  # the lock is free again: renews
    assert devcluster.stats()["kube_certs_issued"] == 2


# What a waiter (nothing valid cached, the lock held by the renewer) imports beyond the cache hit's modules: the
# waiter, the policy and the lock (built-in modules only, no os, json, re, typing or pathlib; docs/design.md).
WAITER = HOT_PATH | {"errno", "fcntl", "kubectl_teleport.waiter", "kubectl_teleport.policy", "kubectl_teleport.store",
                     "kubectl_teleport.store.lock"}


def _sleeping(pid: int) -> bool:
    """True once the process sleeps in a timed wait (the waiters' poll; nothing before it sleeps)."""
    with open(f"/proc/{pid}/wchan") as fh:
        return "nanosleep" in fh.read()


def test_a_waiter_serves_the_renewers_certificate_without_a_turn_with_the_lock(devcluster, tmp_path):
    """Nothing valid is cached and another process holds the lock (it renews): a waiter serves that process's
    certificate as soon as it is cached, while the lock is still held, and imports only the light careful path."""
    import subprocess
    import time
    from pathlib import Path

    from kubectl_teleport import cache
    from kubectl_teleport.store.datadir import DataDir

    data = tmp_path / "bot"
    login(devcluster, data)
    path = Path(cache.cache_path(str(data), KUBE_CLUSTER))
    renewed = path.read_bytes()
    issued = devcluster.stats()["kube_certs_issued"]
    exec_ = yaml.safe_load((data / "kubeconfig.yaml").read_text())["users"][0]["user"]["exec"]
    python = python_of(exec_["command"])
    env = {**os.environ, "KUBERNETES_EXEC_INFO": EXEC_INFO_V1}
    lock = DataDir(data).acquire(30)
    try:
        make_due(data, expired=True)
        proc = subprocess.Popen([*python, "-v", exec_["command"], *exec_["args"]], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env)
        try:
            deadline = time.monotonic() + 20
            while not _sleeping(proc.pid):  # polling: it found the lock taken and nothing fresh
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.005)
            tmp = path.with_name(".renewed.tmp")
            tmp.write_bytes(renewed)
            tmp.chmod(0o600)
            tmp.replace(path)  # the renewer commits; it still holds the lock
            out, err = proc.communicate(timeout=20)
        finally:
            proc.kill()
    finally:
        lock.release()
    assert proc.returncode == 0
    assert cert_of(out) == json.loads(cache.decode(renewed).status)["clientCertificateData"]
    assert devcluster.stats()["kube_certs_issued"] == issued  # the waiter renewed nothing
    mods = {line.split("'")[1] for line in err.splitlines() if line.startswith("import '")}
    _, floor = imported([*python, "-v", "-c", "pass"], env)
    assert not [line for line in err.splitlines() if not line.startswith(("import ", "#", "Python "))]  # no warning
    assert mods - floor == WAITER


def test_real_kubectl_exec_info_takes_the_fast_path(devcluster, kubectl, tmp_path):
    """What kubectl 1.37.1 really puts in KUBERNETES_EXEC_INFO (with its trailing newline) is a fast-path hit."""
    data = tmp_path / "bot"
    login(devcluster, data)
    kubeconfig = data / "kubeconfig.yaml"
    spy = tmp_path / "spy.sh"
    captured = tmp_path / "exec-info"

    def through_spy(exec_: dict) -> None:
        spy.write_text(f'#!/bin/sh\nprintf %s "$KUBERNETES_EXEC_INFO" > {captured}\nexec {exec_["command"]} "$@"\n')
        spy.chmod(0o755)
        exec_["command"] = str(spy)

    edit_exec(kubeconfig, through_spy)
    assert kubectl_run(kubectl, kubeconfig, tmp_path, "get", "pods", "-n", "demo").returncode == 0
    info = captured.read_text()
    assert execcred.fast_version(info) == execcred.V1
    assert execcred.requested_version(info) == execcred.V1
