"""Renewal logic in-process against a devcluster, with the plugin's clock injected (no sleeping)."""

from __future__ import annotations

import pytest

from kubectl_teleport import clock, errors
from kubectl_teleport.commands import credentials
from kubectl_teleport.errors import PluginError
from kubectl_teleport.issuer import http as api
from kubectl_teleport.issuer import renewal
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


def test_identity_due_is_renewed_before_the_kube_cert(devcluster, bot_dir, monkeypatch):
    ident = identity.load(bot_dir)
    entry = bot_dir.read_entry(KUBE_CLUSTER)
    at(monkeypatch, max(ident.renew_at(), entry.renew_at) + 1)
    before = devcluster.stats()
    credentials.credentials(str(bot_dir.root), KUBE_CLUSTER)
    after = devcluster.stats()
    assert identity.load(bot_dir).generation == ident.generation + 1
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


def test_crash_after_server_answered_recovers_without_lockout(devcluster, bot_dir, monkeypatch):
    ident = identity.load(bot_dir)
    cfg = bot_dir.load_config()
    real_save = identity.save

    def crash(*_a, **_k):
        raise KeyboardInterrupt("killed between the answer and the write")

    monkeypatch.setattr(identity, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        renewal.current_identity(bot_dir, cfg, ident.renew_at() + 1, api.Deadline(), force=True)
    assert bot_dir.pending_path.exists()
    assert identity.load(bot_dir).generation == ident.generation  # nothing committed
    monkeypatch.setattr(identity, "save", real_save)
    renewed = renewal.current_identity(bot_dir, cfg, ident.renew_at() + 1, api.Deadline())
    assert renewed.generation == ident.generation + 1
    assert not bot_dir.pending_path.exists()
    stats = devcluster.stats()
    assert stats["identity_renewals"] == 1 and stats["idempotent_retries"] == 1
    assert "robot" not in devcluster.admin("locks", "ls").stdout
    renewal.issue_kube_cert(bot_dir, cfg, KUBE_CLUSTER, api.Deadline())  # the new identity works


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
    assert "locked" in str(err.value)
    with pytest.raises(PluginError) as err:
        renewal.issue_kube_cert(bot_dir, cfg, KUBE_CLUSTER, api.Deadline())
    assert "bot_locked" in str(err.value)
