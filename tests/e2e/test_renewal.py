"""Renewal logic in-process against a devcluster's Teleport side, with the plugin's clock injected (no sleeping).

Teleport has no idempotent renewal: a second renewal from the same certificate after the server committed one
locks the bot. So an unfinished renewal whose request may have left is *ambiguous*: the identity is kept, kube
certificates are still issued from it, and the renewal is tried again only near the identity's expiry
(docs/design.md, "Crash safety of identity renewal").
"""

from __future__ import annotations

import json

import pytest

from harness.faults import closed_port
from harness.grpc_faults import GrpcFaultServer
from kubectl_teleport import clock, errors, pki
from kubectl_teleport.commands import credentials
from kubectl_teleport.errors import PluginError
from kubectl_teleport.issuer import http as api
from kubectl_teleport.issuer import renewal, teleport
from kubectl_teleport.store import files as fsutil
from kubectl_teleport.store import identity
from kubectl_teleport.store.datadir import DataDir
from tests.plugin_helpers import EXEC_INFO_V1, KUBE_CLUSTER, login, make_due


@pytest.fixture
def bot_dir(devcluster, tmp_path, monkeypatch):
    data = tmp_path / "bot"
    login(devcluster, data)
    monkeypatch.setenv("KUBERNETES_EXEC_INFO", EXEC_INFO_V1)
    return DataDir(data)


def at(monkeypatch, ts: float) -> None:
    monkeypatch.setattr(clock, "now", lambda: ts)


def set_proxy(dd: DataDir, address: str) -> str:
    cfg = json.loads(dd.config_path.read_bytes())
    old, cfg["proxy"] = cfg["proxy"], address
    fsutil.atomic_write(dd.config_path, json.dumps(cfg).encode())
    return old


def test_identity_due_is_renewed_before_the_kube_cert(devcluster, bot_dir, monkeypatch):
    ident = identity.load(bot_dir)
    entry = bot_dir.read_entry(KUBE_CLUSTER)
    at(monkeypatch, max(ident.renew_at(), entry.renew_at) + 1)
    before = devcluster.stats()
    credentials.credentials(str(bot_dir.root), KUBE_CLUSTER)
    after = devcluster.stats()
    renewed = identity.load(bot_dir)
    assert renewed.generation == ident.generation + 1 and renewed.bot_instance_id == ident.bot_instance_id
    assert renewed.ssh_cert and renewed.ssh_cert != ident.ssh_cert  # the SSH certificate travels with it
    assert after["identity_renewals"] == before["identity_renewals"] + 1
    assert after["kube_certs_issued"] == before["kube_certs_issued"] + 1
    assert not bot_dir.pending_path.exists()


def test_fresh_identity_is_not_renewed(devcluster, bot_dir):
    make_due(bot_dir.root)  # only the kube certificate is due; the real clock keeps the identity fresh
    before = devcluster.stats()
    credentials.credentials(str(bot_dir.root), KUBE_CLUSTER)
    after = devcluster.stats()
    assert after["identity_renewals"] == before["identity_renewals"]
    assert after["kube_certs_issued"] == before["kube_certs_issued"] + 1


def test_expired_identity_says_log_in_again(devcluster, bot_dir, monkeypatch):
    at(monkeypatch, identity.load(bot_dir).not_after + 1)
    with pytest.raises(PluginError) as err:
        credentials.credentials(str(bot_dir.root), KUBE_CLUSTER)
    assert err.value.code == errors.IDENTITY_REJECTED
    assert "log in again" in str(err.value)
    assert devcluster.stats()["identity_renewals"] == 0


def test_lost_answer_holds_the_renewal_and_the_retry_near_expiry_meets_the_lock(devcluster, bot_dir, monkeypatch):
    """Killed between the server's answer and the save: Teleport committed generation 2, we still hold 1."""
    ident = identity.load(bot_dir)
    cfg = bot_dir.load_config()
    real_save = identity.save

    def crash(*_a, **_k):
        raise KeyboardInterrupt("killed between the answer and the write")

    monkeypatch.setattr(identity, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        renewal.current_identity(bot_dir, cfg, ident.renew_at() + 1, api.Deadline(), force=True)
    monkeypatch.setattr(identity, "save", real_save)
    pending = identity.load_pending(bot_dir)
    assert pending is not None and pending.sent and pending.for_generation == ident.generation
    assert devcluster.stats()["identity_renewals"] == 1

    # due, forced even: held; the identity is kept and kube certificates are still issued from it
    notes: list[str] = []
    kept = renewal.current_identity(bot_dir, cfg, ident.renew_at() + 1, api.Deadline(), force=True, notes=notes)
    assert kept.generation == ident.generation and kept.renew_at() == renewal.retry_at(kept) > ident.renew_at()
    assert len(notes) == 1 and "was lost" in notes[0] and "log in again now with a new join token" in notes[0]
    renewal.issue_kube_cert(bot_dir, cfg, KUBE_CLUSTER, api.Deadline())
    stats = devcluster.stats()
    assert stats["identity_renewals"] == 1 and stats["kube_certs_issued"] == 2
    assert "robot" not in devcluster.admin("locks", "ls").stdout

    # close to expiry: one retry, which Teleport answers with the lock; one line naming the recovery, no loop
    with pytest.raises(PluginError) as err:
        renewal.current_identity(bot_dir, cfg, renewal.retry_at(kept) + 1, api.Deadline(), notes=[])
    assert err.value.code == errors.IDENTITY_REJECTED
    assert "generation mismatch" in str(err.value) and "tctl rm lock/" in str(err.value)
    assert "robot" in devcluster.admin("locks", "ls").stdout
    assert not bot_dir.pending_path.exists()  # a refusal is definite: nothing is in doubt any more


def test_an_ambiguous_failure_is_held_and_retried_near_expiry(devcluster, bot_dir, monkeypatch):
    """UNAVAILABLE after the request left: maybe committed, maybe not. Here it was not: the retry succeeds."""
    monkeypatch.setattr(teleport, "RENEW_ANSWER_WAIT", 0.5)
    ident = identity.load(bot_dir)
    cfg = bot_dir.load_config()
    with GrpcFaultServer("unavailable", state_dir=devcluster.state_dir) as server:
        real = set_proxy(bot_dir, server.address)
        notes: list[str] = []
        kept = renewal.current_identity(bot_dir, bot_dir.load_config(), ident.renew_at() + 1, api.Deadline(5),
                                        notes=notes)
    assert server.calls["/proto.AuthService/GenerateUserCerts"] == 1  # a renewal is never retried at once
    assert kept.generation == ident.generation and "renewing the bot identity failed" in notes[0]
    assert identity.load_pending(bot_dir).sent
    set_proxy(bot_dir, real)
    held = renewal.current_identity(bot_dir, cfg, ident.renew_at() + 2, api.Deadline(), force=True)
    assert held.generation == ident.generation and devcluster.stats()["identity_renewals"] == 0
    renewed = renewal.current_identity(bot_dir, cfg, renewal.retry_at(held) + 1, api.Deadline())
    assert renewed.generation == ident.generation + 1 and not bot_dir.pending_path.exists()


def test_a_renewal_that_never_left_is_not_in_doubt(devcluster, bot_dir, monkeypatch):
    """Connection refused (or a crash before the request left): the record is dropped and the next call renews."""
    ident = identity.load(bot_dir)
    real = set_proxy(bot_dir, closed_port())
    notes: list[str] = []
    renewal.current_identity(bot_dir, bot_dir.load_config(), ident.renew_at() + 1, api.Deadline(2), notes=notes)
    assert "cannot" in notes[0] or "failed" in notes[0]
    assert not bot_dir.pending_path.exists()
    set_proxy(bot_dir, real)
    other_key = pki.private_key_pem(pki.key_for_suite(bot_dir.load_config().suite))
    identity.save_pending(bot_dir, identity.Pending(other_key, ident.generation, 1.0, sent=False))  # crashed early
    assert renewal.pending_state(bot_dir, ident) is None and not bot_dir.pending_path.exists()
    renewed = renewal.current_identity(bot_dir, bot_dir.load_config(), ident.renew_at() + 1, api.Deadline())
    assert renewed.generation == ident.generation + 1


def test_a_copied_identity_locks_the_bot(devcluster, bot_dir, tmp_path):
    import shutil

    copy = DataDir(tmp_path / "copy")
    shutil.copytree(bot_dir.root, copy.root)
    cfg = bot_dir.load_config()
    ident = identity.load(bot_dir)
    renewal.current_identity(bot_dir, cfg, ident.renew_at() + 1, api.Deadline())
    with pytest.raises(PluginError) as err:
        renewal.current_identity(copy, cfg, ident.renew_at() + 1, api.Deadline())
    assert err.value.code == errors.IDENTITY_REJECTED
    assert "generation mismatch" in str(err.value)
    with pytest.raises(PluginError) as err:
        renewal.issue_kube_cert(bot_dir, cfg, KUBE_CLUSTER, api.Deadline())
    assert err.value.code == errors.IDENTITY_REJECTED and "locked" in str(err.value)
    assert "tctl rm lock/" in str(err.value)
