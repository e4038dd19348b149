"""`--store-identity kubernetes-secret://NAMESPACE/NAME` and `--secret-label` against the devcluster's Secrets API:
the bot's renewable identity kept in a Secret so a pod restarted with an empty data dir resumes without a token, with
one writer (every write conditional on the resourceVersion last read or written: a second process that read the
same version gets 409 and stops before Teleport sees a second renewal from that generation), the pending key of an
unfinished renewal kept in the Secret and retried with the same key, an expired identity refused, and logout's
conditional delete. Time is injected where a test needs the future (no sleeps)."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import stat
import subprocess
from pathlib import Path

import pytest

from kubectl_teleport import clock, errors, pki
from kubectl_teleport.commands.start import Daemon
from kubectl_teleport.errors import AnotherWriter, PluginError
from kubectl_teleport.issuer import http as api
from kubectl_teleport.issuer import renewal
from kubectl_teleport.outputs import kube_secret as ks
from kubectl_teleport.store import identity
from kubectl_teleport.store.datadir import DataDir
from kubectl_teleport.store.identity_secret import RESUMED, IdentitySecret
from tests.e2e.test_daemon import DaemonProcess
from tests.e2e.test_kube_secret import grant_secrets
from tests.plugin_helpers import (
    KUBE_CLUSTER,
    cert_of,
    credentials,
    join_args,
    kubectl_run,
    login,
    make_due,
    plugin,
    web_trust,
)

URL = "kubernetes-secret://demo/robot-identity"
REF = ks.SecretRef("demo", "robot-identity")
DEST = "kubernetes-secret://demo/robot-out"


@pytest.fixture
def kube(devcluster, tmp_path: Path) -> dict:
    """Access to the devcluster's Kubernetes API as a pod's would be: another bot's static kubeconfig (user alice,
    allowed to use Secrets in `demo`), given as $KUBECONFIG."""
    admin_dest = tmp_path / "admin-out"
    login(devcluster, tmp_path / "admin", "--destination", str(admin_dest), "--static")
    grant_secrets(devcluster)
    path = admin_dest / "kubeconfig.yaml"
    return {"kubeconfig": path, "env": {"KUBECONFIG": str(path)}, "home": tmp_path / "home",
            "access": ks.load_kubeconfig(str(path))}


@pytest.fixture
def as_pod(kube, monkeypatch) -> dict:
    """In-process callers reach the API the same way."""
    monkeypatch.setenv("KUBECONFIG", str(kube["kubeconfig"]))
    return kube


def jsonpath(kubectl, kube: dict, path: str, name: str = REF.name) -> subprocess.CompletedProcess:
    return kubectl_run(kubectl, kube["kubeconfig"], kube["home"], "get", "secret", name, "-n", "demo", "-o",
                       f"jsonpath={path}")


def secret(kube: dict) -> ks.SecretInfo | None:
    return ks.read_secret(REF, access=kube["access"])


def locked(devcluster, bot: str) -> bool:
    return any(x["bot"] == bot for x in json.loads(devcluster.admin("locks", "ls", "--format", "json").stdout))


def locked_sync(store: IdentitySecret, now: float) -> str:
    """What `start` does first: under the identity's lock, fill the data dir from the Secret."""
    lock = store.dd.acquire(5)
    try:
        return store.sync(now, token=False)
    finally:
        lock.release()


def assert_one_line(out: subprocess.CompletedProcess, code: int) -> str:
    assert out.returncode == code, (out.returncode, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr and "BEGIN" not in out.stderr + out.stdout
    return lines[0]


def test_login_creates_the_secret_and_a_fresh_data_dir_resumes_from_it_without_a_token(devcluster, kubectl, kube,
                                                                                       tmp_path: Path) -> None:
    data, fresh = tmp_path / "pod-1", tmp_path / "pod-2"
    bot = devcluster.add_bot("stored")
    out = login(devcluster, data, "--store-identity", URL, bot=bot, env=kube["env"])
    assert f"Stored the bot identity in Secret {URL}." in out.stdout
    dd = DataDir(data)
    assert dd.load_config().identity_secret == URL
    first = identity.load(dd)

    # the Secret: the data dir's config.json and identity.pem, annotations naming bot and generation (no secret)
    keys = json.loads(jsonpath(kubectl, kube, "{.data}").stdout)
    assert set(keys) == {"config.json", "identity.pem"}
    assert base64.b64decode(keys["identity.pem"]) == (data / "identity.pem").read_bytes()
    assert json.loads(base64.b64decode(keys["config.json"]))["identity_secret"] == URL
    notes = json.loads(jsonpath(kubectl, kube, "{.metadata.annotations}").stdout)
    assert notes == {"kubectl-teleport.dev/bot": "stored", "kubectl-teleport.dev/generation": str(first.generation)}
    assert jsonpath(kubectl, kube, "{.type}").stdout == "Opaque"
    for name in ("config.json", "identity.pem", "identity.secret.json"):
        assert stat.S_IMODE(os.stat(data / name).st_mode) == 0o600

    # a restarted pod: an empty data dir, no token; start --oneshot reads the Secret, renews, writes it back
    before = devcluster.stats()["identity_renewals"]
    resumed = plugin("start", "--oneshot", "--data-dir", str(fresh), "--store-identity", URL, env=kube["env"])
    assert resumed.returncode == 0, resumed.stderr
    renewed = identity.load(DataDir(fresh))
    assert renewed.generation == first.generation + 1 and renewed.bot_instance_id == first.bot_instance_id
    assert devcluster.stats()["identity_renewals"] == before + 1
    held = secret(kube)
    assert held is not None and set(held.data) == {"config.json", "identity.pem"}  # no pending key left
    assert held.data["identity.pem"] == (fresh / "identity.pem").read_bytes()
    assert held.annotations["kubectl-teleport.dev/generation"] == str(renewed.generation)
    for name in ("config.json", "identity.pem"):
        assert stat.S_IMODE(os.stat(fresh / name).st_mode) == 0o600
    assert cert_of(credentials(fresh).stdout)  # and kubectl's calls work from it
    shown = plugin("status", "--data-dir", str(fresh), "-o", "json")
    assert json.loads(shown.stdout)["identity_secret"] == {"url": URL, "resource_version": held.resource_version}
    assert not locked(devcluster, "stored")

    # a login without a token resumes as well (and says the token is not needed); nothing is renewed
    third = tmp_path / "pod-3"
    again = plugin("login", "--data-dir", str(third), "--kube-cluster", KUBE_CLUSTER, "--store-identity", URL,
                   env={**web_trust(devcluster), **kube["env"]})
    assert again.returncode == 0, again.stderr
    assert f"Resumed the bot identity from Secret {URL}." in again.stdout
    assert identity.load(DataDir(third)).generation == renewed.generation
    assert devcluster.stats()["identity_renewals"] == before + 1

    # logout deletes the Secret only if nobody wrote it since: pod-1's version is stale, pod-3's is current
    stale = plugin("logout", "--data-dir", str(data), env=kube["env"])
    assert stale.returncode == 0, stale.stderr
    assert "was written by another process since this one read it; it was left in place" in stale.stdout
    assert secret(kube) is not None
    gone = plugin("logout", "--data-dir", str(third), env=kube["env"])
    assert gone.returncode == 0, gone.stderr
    assert f"Deleted the identity Secret {URL}" in gone.stdout
    assert secret(kube) is None
    assert jsonpath(kubectl, kube, "{.type}").returncode != 0


def test_two_processes_from_one_version_exactly_one_renews(devcluster, as_pod, tmp_path: Path) -> None:
    """Two pods start from the same resourceVersion: the first conditional write (its pending key) wins; the other
    gets 409 before it has sent anything, stops renewing and exits 9. Teleport, which locks a bot renewed twice from
    one generation, sees one renewal and does not lock the bot."""
    bot = devcluster.add_bot("twins")
    login(devcluster, tmp_path / "seed", "--store-identity", URL, bot=bot, env=as_pod["env"])
    pods = [DataDir(tmp_path / "pod-a"), DataDir(tmp_path / "pod-b")]
    stores = [IdentitySecret(dd, URL) for dd in pods]
    for store in stores:
        assert locked_sync(store, clock.now()) == RESUMED
    assert stores[0].state().resource_version == stores[1].state().resource_version
    generation = identity.load(pods[0]).generation
    before = devcluster.stats()["identity_renewals"]
    logs: list[str] = []

    winner = Daemon(pods[0], store=stores[0], log=lambda m, p: logs.append(m))
    assert winner.oneshot() == errors.OK
    with pytest.raises(PluginError) as lost:
        Daemon(pods[1], store=stores[1], log=lambda m, p: logs.append(m)).oneshot()
    assert lost.value.code == errors.UNSAFE_STATE == 9
    assert "written by another process since this one read it" in str(lost.value)
    assert "\n" not in str(lost.value)

    assert devcluster.stats()["identity_renewals"] == before + 1
    assert not locked(devcluster, "twins")
    assert identity.load(pods[1]).generation == generation and not pods[1].pending_path.exists()
    held = secret(as_pod)
    assert held.data["identity.pem"] == pods[0].identity_path.read_bytes() and "identity.pending.json" not in held.data

    # the serving daemon stops too (exit 9), rather than backing off and retrying
    loser = Daemon(pods[1], store=stores[1], log=lambda m, p: logs.append(m), wait=lambda s: None)
    with pytest.raises(AnotherWriter):
        loser.serve()
    assert devcluster.stats()["identity_renewals"] == before + 1 and not locked(devcluster, "twins")


def test_a_running_daemon_that_lost_the_secret_to_another_pod_exits_9(devcluster, as_pod, tmp_path: Path) -> None:
    """The real daemons: pod A serves (renewed at start, then sleeping); pod B starts (a rollout's new pod) and
    renews from the Secret A wrote; on SIGHUP A's renewal meets 409 before asking Teleport and A exits 9."""
    bot = devcluster.add_bot("rollout")
    login(devcluster, tmp_path / "seed", "--store-identity", URL, bot=bot, env=as_pod["env"])
    old = DaemonProcess(tmp_path, "--data-dir", str(tmp_path / "pod-a"), "--store-identity", URL)
    try:
        old.wait_for("renewal done (start)")
        before = devcluster.stats()["identity_renewals"]
        new = plugin("start", "--oneshot", "--data-dir", str(tmp_path / "pod-b"), "--store-identity", URL)
        assert new.returncode == 0, new.stderr
        old.proc.send_signal(signal.SIGHUP)
        assert old.proc.wait(30) == 9
    finally:
        old.stop()
    log = old.log()
    assert log.count("renewal started") == 2 and "renewal done (reload)" not in log
    assert "kubectl-teleport: error: the bot identity in Secret" in log.splitlines()[-1]
    assert "written by another process since this one read it" in log and "BEGIN" not in log
    assert devcluster.stats()["identity_renewals"] == before + 1  # B's only: A sent nothing
    assert not locked(devcluster, "rollout")
    assert secret(as_pod).data["identity.pem"] == (tmp_path / "pod-b" / "identity.pem").read_bytes()


def test_a_pending_key_in_the_secret_is_retried_with_the_same_key(devcluster, as_pod, tmp_path: Path) -> None:
    """A pod died after writing its pending key to the Secret (here Teleport never got the request). Another pod
    finds it, holds the renewal as in doubt (the data dir's rule), then retries it near expiry with that key."""
    bot = devcluster.add_bot("pending")
    seed = DataDir(tmp_path / "seed")
    login(devcluster, seed.root, "--store-identity", URL, bot=bot, env=as_pod["env"])
    ident = identity.load(seed)
    key = pki.private_key_pem(pki.key_for_suite(seed.load_config().suite))
    record = identity.Pending(key, ident.generation, ident.renew_at(), sent=False)  # as a pod saves it locally
    held = secret(as_pod)
    ks.write_files(REF, {**held.data, "identity.pending.json": identity.encode_pending(record)},
                   access=as_pod["access"], resource_version=held.resource_version, force=True)

    pod = DataDir(tmp_path / "pod")
    store = IdentitySecret(pod, URL)
    assert locked_sync(store, ident.renew_at()) == RESUMED
    assert identity.load_pending(pod).key_pem == key  # materialised, and read as sent (the Secret's safe reading)
    cfg = pod.load_config()
    before = devcluster.stats()["identity_renewals"]
    notes: list[str] = []
    kept = renewal.current_identity(pod, cfg, ident.renew_at() + 1, api.Deadline(), force=True, notes=notes,
                                    store=store)
    assert kept.generation == ident.generation and "was lost" in notes[0]
    assert devcluster.stats()["identity_renewals"] == before

    retried = renewal.current_identity(pod, cfg, renewal.retry_at(kept) + 1, api.Deadline(), store=store)
    assert retried.generation == ident.generation + 1
    assert pki.public_keys_equal(retried.cert.public_key(), pki.load_private_key(key).public_key())
    assert devcluster.stats()["identity_renewals"] == before + 1 and not locked(devcluster, "pending")
    now_held = secret(as_pod)
    assert "identity.pending.json" not in now_held.data and not pod.pending_path.exists()
    assert now_held.data["identity.pem"] == pod.identity_path.read_bytes()


def test_an_expired_identity_in_the_secret_exits_4_and_a_login_with_a_token_replaces_it(devcluster, kube,
                                                                                        tmp_path: Path) -> None:
    old_bot = devcluster.add_bot("expired")
    login(devcluster, tmp_path / "seed", "--store-identity", URL, bot=old_bot, env=kube["env"])
    held = secret(kube)
    # received 25 years ago on this machine's clock: the identity's expiry, mapped onto our clock, is long past
    aged = re.sub(rb"(?m)^received-at: \d+$", b"received-at: 1000000000", held.data["identity.pem"])
    assert aged != held.data["identity.pem"]
    ks.write_files(REF, {**held.data, "identity.pem": aged}, access=kube["access"],
                   resource_version=held.resource_version, force=True)
    fresh = tmp_path / "pod"
    out = plugin("start", "--oneshot", "--data-dir", str(fresh), "--store-identity", URL, env=kube["env"])
    line = assert_one_line(out, 4)
    assert f"the bot identity in Secret {URL} expired at" in line and "new join token" in line
    assert not (fresh / "identity.pem").exists()

    # a login with a new token replaces it (conditionally on the version it read)
    new_bot = devcluster.add_bot("replacement")
    again = plugin("login", *join_args(new_bot), "--kube-cluster", KUBE_CLUSTER, "--data-dir", str(fresh),
                   "--store-identity", URL, env={**web_trust(devcluster), **kube["env"]})
    assert again.returncode == 0, again.stderr
    replaced = secret(kube)
    assert replaced.uid == held.uid and replaced.annotations["kubectl-teleport.dev/bot"] == "replacement"
    assert replaced.data["identity.pem"] == (fresh / "identity.pem").read_bytes()


def test_a_valid_secret_is_resumed_and_the_token_is_not_used(devcluster, kube, tmp_path: Path) -> None:
    bot = devcluster.add_bot("keeper")
    login(devcluster, tmp_path / "seed", "--store-identity", URL, bot=bot, env=kube["env"])
    other = devcluster.add_bot("unused")
    out = plugin("login", *join_args(other), "--kube-cluster", KUBE_CLUSTER, "--data-dir", str(tmp_path / "pod"),
                 "--store-identity", URL, env={**web_trust(devcluster), **kube["env"]})
    assert out.returncode == 0, out.stderr
    assert "The join token was not used" in out.stdout
    assert identity.load(DataDir(tmp_path / "pod")).bot == "keeper"
    # the token is still good: it logs in elsewhere
    login(devcluster, tmp_path / "elsewhere", bot=other)


def test_no_secret_and_no_token_is_not_logged_in(devcluster, kube, tmp_path: Path) -> None:
    out = plugin("start", "--oneshot", "--data-dir", str(tmp_path / "pod"), "--store-identity", URL,
                 env=kube["env"])
    line = assert_one_line(out, 3)
    assert f"no bot identity in Secret {URL}" in line and "--token" in line
    # the identity Secret is never also a destination (a destination's apply would drop the identity's keys)
    both = plugin("start", "--oneshot", "--data-dir", str(tmp_path / "pod"), "--store-identity", URL,
                  "--destination", "kubernetes-secret://demo/robot-identity", env=kube["env"])
    assert "is both the identity Secret and a destination" in assert_one_line(both, 2)


def test_secret_labels_on_both_secrets_recorded_and_kept_by_start(devcluster, kubectl, kube, tmp_path: Path) -> None:
    data = tmp_path / "bot"
    bot = devcluster.add_bot("labelled")
    bad = plugin("login", *join_args(bot), "--kube-cluster", KUBE_CLUSTER, "--data-dir", str(data),
                 "--destination", DEST, "--secret-label", "team=ci", "--secret-label", "bad key=x",
                 env={**web_trust(devcluster), **kube["env"]})
    line = assert_one_line(bad, 2)
    assert "invalid Secret label key 'bad key'" in line
    novalue = plugin("login", *join_args(bot), "--kube-cluster", KUBE_CLUSTER, "--data-dir", str(data),
                     "--secret-label", "team", env=web_trust(devcluster))
    assert "give KEY=VALUE" in assert_one_line(novalue, 2)
    assert not data.exists()  # nothing written, the token not spent

    login(devcluster, data, "--destination", DEST, "--store-identity", URL, "--secret-label", "team=ci",
          "--secret-label", "app.kubernetes.io/part-of=robots", bot=bot, env=kube["env"])
    want = {"team": "ci", "app.kubernetes.io/part-of": "robots"}
    assert DataDir(data).load_config().secret_labels == want
    for name in ("robot-out", "robot-identity"):
        assert json.loads(jsonpath(kubectl, kube, "{.metadata.labels}", name).stdout) == want

    # start keeps them without the flag (a renewal rewrites the destination), and a new set replaces them
    make_due(data)
    kept = plugin("start", "--oneshot", "--data-dir", str(data), env=kube["env"])
    assert kept.returncode == 0, kept.stderr
    assert json.loads(jsonpath(kubectl, kube, "{.metadata.labels}", "robot-out").stdout) == want
    changed = plugin("start", "--oneshot", "--data-dir", str(data), "--secret-label", "team=ops", env=kube["env"])
    assert changed.returncode == 0, changed.stderr
    for name in ("robot-out", "robot-identity"):
        assert json.loads(jsonpath(kubectl, kube, "{.metadata.labels}", name).stdout) == {"team": "ops"}


def test_the_devcluster_answers_conditional_writes_as_kube_apiserver(devcluster, kube) -> None:
    """What the one-writer rule relies on, against the devcluster's Kubernetes endpoint: a POST never overwrites,
    an apply or DELETE carrying a stale resourceVersion is 409, a forced apply takes over a create's fields."""
    access, files = kube["access"], {"identity.pem": b"one"}
    created = ks.create_secret(REF, files, access=access)
    with pytest.raises(ks.SecretConflict, match="another writer created it first"):
        ks.create_secret(REF, {"identity.pem": b"two"}, access=access)
    assert secret(kube).data == files

    moved = ks.write_files(REF, {"identity.pem": b"two"}, access=access, resource_version=created.resource_version,
                           force=True)  # the create's `Update` entry owns the key: taken over by the forced apply
    assert moved.resource_version != created.resource_version
    with pytest.raises(ks.SecretConflict) as stale:
        ks.write_files(REF, {"identity.pem": b"three"}, access=access, resource_version=created.resource_version,
                       force=True)
    assert 'Operation cannot be fulfilled on secrets "robot-identity": the object has been modified' in str(stale.value)
    assert secret(kube).data == {"identity.pem": b"two"}

    with pytest.raises(ks.SecretConflict) as refused:
        ks.delete_secret(REF, access=access, resource_version=created.resource_version)
    assert (f"Precondition failed: ResourceVersion in precondition: {created.resource_version}, ResourceVersion in "
            f"object meta: {moved.resource_version}") in str(refused.value)
    assert ks.delete_secret(REF, access=access, resource_version=moved.resource_version) is True
    assert ks.delete_secret(REF, access=access) is False

    # an apply's resourceVersion is ignored when the Secret is missing: it creates (kubernetes#106745), which is
    # why the identity Secret is created with a POST and an apply that created is treated as "deleted under us"
    assert ks.write_files(REF, files, access=access, resource_version=moved.resource_version).created


def test_doctor_names_where_the_identity_secret_stands(devcluster, kubectl, kube, tmp_path: Path) -> None:
    """doctor's `identity Secret` row: as this data dir wrote it; written by another process since (a problem:
    one writer); not holding the data dir's latest state; gone."""
    data = tmp_path / "pod"
    login(devcluster, data, "--store-identity", URL, bot=devcluster.add_bot("doctored"), env=kube["env"])

    def row() -> tuple[subprocess.CompletedProcess, dict]:
        out = plugin("doctor", "--data-dir", str(data), "-o", "json", env={**web_trust(devcluster), **kube["env"]})
        rows = {r["check"]: r for r in json.loads(out.stdout)["checks"]}
        assert "BEGIN" not in out.stdout
        return out, rows["identity Secret"]

    out, r = row()
    assert r["level"] == "ok" and "generation 1" in r["message"] and URL in r["message"], out.stdout
    touch = tmp_path / "touch.yaml"  # another writer: an operator's server-side apply of an annotation
    touch.write_text(f"apiVersion: v1\nkind: Secret\nmetadata:\n  name: {REF.name}\n  namespace: demo\n"
                     "  annotations:\n    touched: 'yes'\n")
    assert kubectl_run(kubectl, kube["kubeconfig"], kube["home"], "apply", "--server-side", "--field-manager",
                       "operator", "-f", str(touch)).returncode == 0
    out, r = row()
    assert r["level"] == "problem" and "another process" in r["message"], out.stdout
    assert out.returncode == errors.UNSAFE_STATE
    store = IdentitySecret(DataDir(data), URL, access=kube["access"])
    assert locked_sync(store, clock.now()) == RESUMED  # this dir reads it again (what a restart does)
    out, r = row()
    assert r["level"] == "ok", out.stdout
    cfg = json.loads((data / "config.json").read_text())
    cfg["secret_labels"] = {"team": "infra"}  # a state the Secret does not hold yet
    (data / "config.json").write_text(json.dumps(cfg))
    out, r = row()
    assert r["level"] == "warning" and "latest state" in r["message"], out.stdout
    ks.delete_secret(REF, access=kube["access"])
    out, r = row()
    assert r["level"] == "warning" and "does not exist" in r["message"] and "new join token" in r["message"]
