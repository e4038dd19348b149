"""`kube ls` against the devcluster: every cluster the roles grant (ListResources with an impersonated identity),
the ones set up marked, pagination, the local fallback, and the bot identity's generation left alone."""

from __future__ import annotations

import json

import pytest

from kubectl_teleport import errors
from kubectl_teleport.devcluster import store
from kubectl_teleport.issuer import kubelist
from tests.plugin_helpers import KUBE_CLUSTER, login, plugin

DEV_ONLY_ROLE = """\
kind: role
version: v5
metadata:
  name: dev-only
spec:
  allow:
    kubernetes_labels:
      env: dev
    kubernetes_groups: [example]
    kubernetes_users: [alice]
"""


def _dev_bot(devcluster, tmp_path, *extra: str):
    role = tmp_path / "role.yaml"
    role.write_text(DEV_ONLY_ROLE)
    devcluster.admin("create", "-f", str(role))
    devcluster.admin("kube", "add", "dev-b", "--labels", "env=dev,team=web")
    devcluster.admin("kube", "add", "prod-a", "--labels", "env=prod")
    data = tmp_path / "bot"
    login(devcluster, data, *extra, bot=devcluster.add_bot("devbot", roles="dev-only"))
    return data


@pytest.mark.parametrize("version", ["16", "17", "18"])
def test_a_dev_role_sees_the_dev_clusters_marked_and_not_prod(devcluster_factory, tmp_path, version):
    devcluster = devcluster_factory("--teleport-version", version)
    data = _dev_bot(devcluster, tmp_path)
    before = devcluster.stats()
    out = plugin("kube", "ls", "--data-dir", str(data))
    assert out.returncode == 0 and out.stderr == "", out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith(f"Teleport cluster {devcluster.cluster_name} ") and "generation 1" in lines[0]
    assert lines[1].split()[:3] == ["NAME", "LABELS", "SET"]
    rows = {line.split()[0]: line.split() for line in lines[2:4]}
    assert rows["dev-b"][:3] == ["dev-b", "env=dev,team=web", "no"]
    assert rows[KUBE_CLUSTER][:6] == [KUBE_CLUSTER, "env=dev", "yes", "dev-only", "alice", "example"]
    assert "prod-a" not in out.stdout
    assert lines[-1] == "`kubectl-teleport login --kube-cluster NAME` sets one up."

    report = json.loads(plugin("kube", "ls", "--data-dir", str(data), "-o", "json").stdout)
    assert (report["source"], report["warning"]) == ("teleport", None)
    clusters = {c["name"]: c for c in report["clusters"]}
    assert set(clusters) == {"dev-b", KUBE_CLUSTER}
    assert clusters["dev-b"] == {"name": "dev-b", "labels": {"env": "dev", "team": "web"}, "set_up": False,
                                 "granted": True}
    assert clusters[KUBE_CLUSTER]["set_up"] and clusters[KUBE_CLUSTER]["kubernetes_users"] == ["alice"]
    # the listing renewed nothing: same identity generation, no renewal on the server, one impersonation per call
    after = devcluster.stats()
    assert after["identity_renewals"] == before["identity_renewals"]
    assert after["impersonated_certs_issued"] == before["impersonated_certs_issued"] + 2
    assert report["teleport"]["generation"] == 1
    status = plugin("kube", "ls", "--data-dir", str(data), "-o", "json")
    assert json.loads(status.stdout)["teleport"]["generation"] == 1


def test_more_clusters_than_a_page_are_all_listed(devcluster, tmp_path):
    data = _dev_bot(devcluster, tmp_path)
    extra = {f"dev-{i:03d}": {"env": "dev"} for i in range(kubelist.PAGE_SIZE + 5)}
    with store.opened(devcluster.state_dir) as conn, store.transaction(conn):  # what `kube add` does, in bulk
        for name, labels in extra.items():
            store.put_kube_cluster(conn, name, labels)
        store.put_kube_cluster(conn, "zz-prod", {"env": "prod"})
    before = devcluster.stats()["list_resources_pages"]
    report = json.loads(plugin("kube", "ls", "--data-dir", str(data), "-o", "json").stdout)
    assert [c["name"] for c in report["clusters"]] == sorted({*extra, "dev-b", KUBE_CLUSTER})
    assert devcluster.stats()["list_resources_pages"] - before == 2  # 108 granted of 109: two pages of 100


def test_unreachable_lists_the_data_dir_with_one_warning(devcluster, tmp_path):
    data = _dev_bot(devcluster, tmp_path)
    devcluster.stop()
    out = plugin("kube", "ls", "--data-dir", str(data), "--timeout", "3")
    assert out.returncode == 0, out.stderr
    warning = out.stderr.strip().splitlines()
    assert len(warning) == 1 and warning[0].startswith("warning: the list is local only"), out.stderr
    assert "cannot reach" in warning[0]
    rows = out.stdout.strip().splitlines()
    assert rows[2].split()[:3] == [KUBE_CLUSTER, "?", "yes"] and len(rows) == 4
    assert rows[-1].startswith("Only the clusters set up here are listed")
    report = json.loads(plugin("kube", "ls", "--data-dir", str(data), "--timeout", "3", "-o", "json").stdout)
    assert report["source"] == "local" and [c["name"] for c in report["clusters"]] == [KUBE_CLUSTER]


def test_offline_asks_nothing(devcluster, tmp_path):
    data = _dev_bot(devcluster, tmp_path)
    before = devcluster.stats()
    out = plugin("kube", "ls", "--data-dir", str(data), "--offline")
    assert out.returncode == 0 and out.stderr.count("\n") == 1 and "--offline" in out.stderr
    assert "dev-b" not in out.stdout and KUBE_CLUSTER in out.stdout
    assert devcluster.stats() == before


def test_a_role_the_bot_may_no_longer_use_is_one_line_and_exit_5(devcluster, tmp_path):
    data = _dev_bot(devcluster, tmp_path)
    devcluster.admin("roles", "rm", "dev-only")  # the bot may still impersonate it, but it is gone: NOT_FOUND
    out = plugin("kube", "ls", "--data-dir", str(data))
    assert out.returncode == errors.ACCESS_DENIED, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "--role" in out.stderr
    assert "BEGIN" not in out.stderr + out.stdout
