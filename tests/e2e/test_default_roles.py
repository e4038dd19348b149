"""`login` without --role against the devcluster: the roles to impersonate come from the bot's own role (GetRole
with the bot identity, its `allow.impersonate.roles`, as tbot's fetchDefaultRoles), are recorded like --role's,
and kubectl works through the plugin; a bot role that allows nothing fails with one line and leaves the data dir
logged in, so the login finishes without a new token; --role still wins; GetRole of another role is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kubectl_teleport import errors
from kubectl_teleport.issuer import http, renewal, teleport
from kubectl_teleport.store.datadir import resolve
from tests.plugin_helpers import KUBE_CLUSTER, ROLE, credentials, kubectl_run, plugin, web_trust

DEV_ONLY_ROLE = """\
kind: role
version: v5
metadata:
  name: dev-only
spec:
  allow:
    kubernetes_labels:
      env: dev
    kubernetes_groups: [dev-readers]
"""


def _login(devcluster, data: Path, *extra: str, bot: dict | None = None) -> object:
    """A join with the bot's token and pin, and no --role unless `extra` has one."""
    args = ["--proxy", bot["teleport_proxy"], "--token", bot["token"], "--ca-pin", bot["ca_pins"][0]] if bot else []
    return plugin("login", *args, "--kube-cluster", KUBE_CLUSTER, "--data-dir", str(data), *extra,
                  env=web_trust(devcluster))


def _config(data: Path) -> dict:
    return json.loads((data / "config.json").read_text())


def _dev_role(devcluster, tmp_path: Path) -> None:
    role = tmp_path / "role.yaml"
    role.write_text(DEV_ONLY_ROLE)
    devcluster.admin("create", "-f", str(role))


@pytest.mark.parametrize("version", ["16", "17", "18"])
def test_login_without_role_impersonates_what_the_bot_role_allows(devcluster_factory, kubectl, tmp_path, version):
    devcluster = devcluster_factory("--teleport-version", version)
    _dev_role(devcluster, tmp_path)
    bot = devcluster.add_bot("ci", roles=f"{ROLE},dev-only")
    data = tmp_path / "bot"
    out = _login(devcluster, data, bot=bot)
    assert out.returncode == 0, out.stderr
    assert f"Roles to impersonate: {ROLE}, dev-only (what the bot's role bot-ci allows" in out.stdout
    assert bot["token"] not in out.stdout + out.stderr
    assert _config(data)["roles"] == [ROLE, "dev-only"]  # recorded as --role's: renewals read them from here
    who = kubectl_run(kubectl, data / "kubeconfig.yaml", tmp_path, "auth", "whoami", "-o", "json")
    assert who.returncode == 0, who.stderr
    info = json.loads(who.stdout)["status"]["userInfo"]
    assert {"example", "dev-readers"} <= set(info["groups"]) and info["username"] == "alice"  # both roles
    # the careful path re-issues with the recorded roles, no GetRole needed
    assert credentials(data).returncode == 0
    ls = plugin("kube", "ls", "--data-dir", str(data), "-o", "json")
    assert ls.returncode == 0, ls.stderr
    assert json.loads(ls.stdout)["teleport"]["roles"] == [ROLE, "dev-only"]


def test_a_bot_role_allowing_no_role_leaves_the_data_dir_logged_in(devcluster, kubectl, tmp_path):
    bot = devcluster.add_bot("empty", roles="")
    assert bot["roles"] == []
    data = tmp_path / "bot"
    out = _login(devcluster, data, bot=bot)
    assert out.returncode == errors.ACCESS_DENIED, out.stderr
    assert out.stdout == "" and len(out.stderr.splitlines()) == 1 and bot["token"] not in out.stderr
    line = out.stderr
    assert "the bot's role bot-empty allows none" in line and "--role NAME` (no token needed)" in line
    assert f"kubectl-teleport login --data-dir {data} --kube-cluster {KUBE_CLUSTER} --role NAME" in line
    # the documented state: the identity kept, no roles recorded, no cluster set up, no kubeconfig
    assert (data / "identity.pem").is_file() and _config(data)["roles"] == []
    assert _config(data)["kube_clusters"] == {} and not (data / "kubeconfig.yaml").exists()
    for args in (("kube", "ls", "--data-dir", str(data)),):
        ls = plugin(*args)
        assert ls.returncode == errors.NOT_LOGGED_IN and "login --role NAME` (no token needed)" in ls.stderr
    assert credentials(data).returncode == errors.NOT_LOGGED_IN
    # the token is spent: a second join with it is refused, but none is needed any more
    again = _login(devcluster, tmp_path / "other", bot=bot)
    assert again.returncode == errors.IDENTITY_REJECTED
    # an admin lets the bot impersonate a role; the same login without a token (and without --role) finishes
    devcluster.add_bot("empty", roles=ROLE)
    done = _login(devcluster, data)
    assert done.returncode == 0, done.stderr
    assert f"Roles to impersonate: {ROLE}" in done.stdout and "generation 1" in done.stdout
    assert _config(data)["roles"] == [ROLE]
    who = kubectl_run(kubectl, data / "kubeconfig.yaml", tmp_path, "auth", "whoami", "-o", "json")
    assert who.returncode == 0, who.stderr
    assert json.loads(who.stdout)["status"]["userInfo"]["username"] == "alice"


def test_a_bot_role_allowing_no_role_then_login_with_role(devcluster, tmp_path):
    """`--role NAME` without a token on the logged-in dir: the roles are recorded, GetRole is not asked."""
    _dev_role(devcluster, tmp_path)
    bot = devcluster.add_bot("empty", roles="")
    data = tmp_path / "bot"
    assert _login(devcluster, data, bot=bot).returncode == errors.ACCESS_DENIED
    devcluster.add_bot("empty", roles="dev-only")
    out = _login(devcluster, data, "--role", "dev-only")
    assert out.returncode == 0, out.stderr
    assert "Roles to impersonate" not in out.stdout and _config(data)["roles"] == ["dev-only"]


def test_explicit_role_wins_over_the_bot_role(devcluster, tmp_path):
    _dev_role(devcluster, tmp_path)
    bot = devcluster.add_bot("ci", roles=f"{ROLE},dev-only")
    data = tmp_path / "bot"
    out = _login(devcluster, data, "--role", "dev-only", bot=bot)
    assert out.returncode == 0, out.stderr
    assert "Roles to impersonate" not in out.stdout
    assert "roles dev-only (Kubernetes users: none; groups: dev-readers)" in out.stdout
    assert _config(data)["roles"] == ["dev-only"]
    # a login without a token keeps the recorded roles (no GetRole): the hot path and renewals are unchanged
    again = _login(devcluster, data)
    assert again.returncode == 0, again.stderr
    assert "Roles to impersonate" not in again.stdout and _config(data)["roles"] == ["dev-only"]


def test_the_devcluster_lets_a_bot_read_only_its_own_role(devcluster, tmp_path):
    devcluster.add_bot("other")
    data = tmp_path / "bot"
    assert _login(devcluster, data, bot=devcluster.add_bot("ci")).returncode == 0
    dd = resolve(str(data), None)
    cfg = dd.load_config()
    target = renewal.auth_target(dd, cfg)
    own = teleport.get_role(target, "bot-ci", http.Deadline(10))
    assert (own.metadata.name, list(own.spec.allow.impersonate.roles)) == ("bot-ci", [ROLE])
    for name in ("bot-other", ROLE):
        with pytest.raises(errors.AccessDenied, match='access denied to perform action "read" on "role"'):
            teleport.get_role(target, name, http.Deadline(10))
