"""The identity Secret's pure parts (store/identity_secret.py): labels from the command line, the digest that spares
unchanged writes, the data dir's record of the Secret, the config fields, and the one-writer decisions of a write
against a fake Kubernetes API (a 409 that is our own lost answer, a 409 that is another writer, a Secret deleted
under us)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from kubectl_teleport.cli import build_parser
from kubectl_teleport.config import Config
from kubectl_teleport.errors import AnotherWriter, UsageError
from kubectl_teleport.outputs import kube_secret as ks
from kubectl_teleport.store import identity_secret as isec
from kubectl_teleport.store.datadir import DataDir
from tests.unit.test_kube_secret import FakeKube, fake  # noqa: F401 (the fixture)

URL = "kubernetes-secret://bots/robot-identity"
REF = ks.parse_url(URL)
FILES = {"config.json": b"{}", "identity.pem": b"PEM"}


def test_secret_labels_are_key_value_pairs_checked_like_kubernetes() -> None:
    assert isec.parse_labels(["team=ci", "app.kubernetes.io/part-of=robots", "empty=", "team=ci"]) == {
        "team": "ci", "app.kubernetes.io/part-of": "robots", "empty": ""}
    for bad, says in [("team", "give KEY=VALUE"), ("=x", "give KEY=VALUE"), ("bad key=x", "invalid Secret label key"),
                      ("team=no spaces", "invalid value for Secret label 'team'"), ("a" * 64 + "=x", "label key")]:
        with pytest.raises(UsageError, match=says):
            isec.parse_labels([bad])
    with pytest.raises(UsageError, match="given twice with different values"):
        isec.parse_labels(["team=ci", "team=ops"])


def test_the_cli_takes_both_flags_on_login_and_start() -> None:
    for command in ("login", "start"):
        args = build_parser().parse_args([command, "--store-identity", URL, "--secret-label", "a=b",
                                          "--secret-label", "c=d"])
        assert args.store_identity == URL and args.secret_label == ["a=b", "c=d"]


def test_the_url_is_canonical_with_the_pod_namespace(monkeypatch) -> None:
    monkeypatch.setenv("POD_NAMESPACE", "ci")
    assert isec.check_url("kubernetes-secret://robot-identity") == "kubernetes-secret://ci/robot-identity"
    with pytest.raises(UsageError):
        isec.check_url("kubernetes-secret://Bad_Name")


def test_the_digest_changes_with_any_key_label_or_annotation() -> None:
    base = isec.digest(FILES, {"team": "ci"}, isec.annotations("robot", 3))
    assert base == isec.digest(dict(reversed(FILES.items())), {"team": "ci"}, isec.annotations("robot", 3))
    assert base != isec.digest({**FILES, "identity.pending.json": b"{}"}, {"team": "ci"}, isec.annotations("robot", 3))
    assert base != isec.digest(FILES, {}, isec.annotations("robot", 3))
    assert base != isec.digest(FILES, {"team": "ci"}, isec.annotations("robot", 4))
    # keys and values cannot be shifted into each other
    assert isec.digest({"a": b"bc"}, {}, {}) != isec.digest({"ab": b"c"}, {}, {})


def test_annotations_name_bot_and_generation_only() -> None:
    assert isec.annotations("robot", 7) == {"kubectl-teleport.dev/bot": "robot", "kubectl-teleport.dev/generation": "7"}


def test_the_record_of_the_secret_round_trips_and_a_damaged_one_is_none() -> None:
    synced = isec.Synced(URL, "u-1", "42", "d" * 64)
    assert isec.Synced.from_json(synced.to_json()) == synced
    for raw in (b"", b"[]", b"{}", b'{"url": 1}', b"\xff"):
        assert isec.Synced.from_json(raw) is None


def test_config_records_the_secret_and_labels_strictly() -> None:
    cfg = Config(proxy="p:443", cluster_name="c", bot="b", ca_pems=[], identity_secret=URL,
                 secret_labels={"team": "ci"})
    assert Config.from_json(cfg.to_json()) == cfg
    assert Config.from_json(b'{"proxy":"p","cluster_name":"c","bot":"b","ca_pems":[]}').secret_labels == {}
    for bad in (b'"secret_labels": {"a": 1}', b'"secret_labels": ["a"]', b'"identity_secret": 3'):
        with pytest.raises(ValueError):
            Config.from_json(b'{"proxy":"p","cluster_name":"c","bot":"b","ca_pems":[],' + bad + b"}")


def answer(rv: str, data: dict[str, bytes]) -> dict:
    return {"kind": "Secret", "apiVersion": "v1", "type": "Opaque",
            "metadata": {"name": REF.name, "namespace": REF.namespace, "uid": "u-1", "resourceVersion": rv},
            "data": {k: base64.b64encode(v).decode() for k, v in data.items()}}


CONFLICT = (409, {"kind": "Status", "reason": "Conflict", "message": 'Operation cannot be fulfilled on secrets '
                  '"robot-identity": the object has been modified; please apply your changes to the latest version'})


def store(fake: FakeKube, tmp_path: Path) -> isec.IdentitySecret:  # noqa: F811
    return isec.IdentitySecret(DataDir(tmp_path / "d"), URL, access=fake.access())


def test_a_write_is_conditional_and_forced(fake: FakeKube, tmp_path: Path) -> None:  # noqa: F811
    fake.answers[("PATCH", REF.path)] = (200, answer("8", FILES))
    info = store(fake, tmp_path)._write(FILES, {"team": "ci"}, isec.annotations("robot", 2), "7")
    assert info.resource_version == "8"
    [req] = fake.requests
    body = json.loads(req["body"])
    assert body["metadata"]["resourceVersion"] == "7" and req["query"]["force"] == ["true"]
    assert body["metadata"]["labels"] == {"team": "ci"}
    assert body["metadata"]["annotations"]["kubectl-teleport.dev/generation"] == "2"


def test_a_conflict_from_another_writer_stops_with_one_line(fake: FakeKube, tmp_path: Path) -> None:  # noqa: F811
    fake.answers[("PATCH", REF.path)] = CONFLICT
    fake.answers[("GET", REF.path)] = (200, answer("9", {**FILES, "identity.pem": b"THEIRS"}))
    with pytest.raises(AnotherWriter) as err:
        store(fake, tmp_path)._write(FILES, {}, {}, "7")
    assert err.value.code == 9 and "\n" not in str(err.value)
    assert "written by another process since this one read it (resourceVersion 7)" in str(err.value)
    assert "PEM" not in str(err.value) and "THEIRS" not in str(err.value)


def test_a_conflict_that_holds_exactly_our_write_was_our_lost_answer(fake: FakeKube, tmp_path: Path) -> None:  # noqa: F811
    fake.answers[("PATCH", REF.path)] = CONFLICT
    fake.answers[("GET", REF.path)] = (200, answer("9", {**FILES, "someone-elses-key": b"x"}))
    assert store(fake, tmp_path)._write(FILES, {}, {}, "7").resource_version == "9"


def test_a_secret_deleted_under_us_is_not_silently_recreated(fake: FakeKube, tmp_path: Path) -> None:  # noqa: F811
    fake.answers[("PATCH", REF.path)] = (201, answer("12", FILES))  # an apply onto a missing Secret creates it
    fake.answers[("DELETE", REF.path)] = (200, {"kind": "Status", "status": "Success"})
    with pytest.raises(AnotherWriter, match="was deleted since this process read it"):
        store(fake, tmp_path)._write(FILES, {}, {}, "7")
    assert fake.requests[-1]["method"] == "DELETE"
    assert json.loads(fake.requests[-1]["body"])["preconditions"] == {"resourceVersion": "12"}


def test_logout_deletes_only_the_version_it_wrote(fake: FakeKube, tmp_path: Path) -> None:  # noqa: F811
    s = store(fake, tmp_path)
    assert "never read Secret" in s.delete() and not fake.requests
    s.dd.create()
    s.dd.write("identity.secret.json", isec.Synced(URL, "u-1", "7", "x").to_json())
    fake.answers[("DELETE", REF.path)] = CONFLICT
    assert "was written by another process since this one read it; it was left in place" in s.delete()
    assert json.loads(fake.requests[-1]["body"])["preconditions"] == {"resourceVersion": "7"}
    fake.answers[("DELETE", REF.path)] = (200, {"kind": "Status", "status": "Success"})
    assert s.delete() == f"Deleted the identity Secret {URL}"


def test_the_identity_secret_cannot_also_be_a_destination(monkeypatch) -> None:
    monkeypatch.setenv("POD_NAMESPACE", "bots")
    isec.check_apart(URL, ["/some/dir", "kubernetes-secret://bots/robot-out"])
    for same in (URL, "kubernetes-secret://robot-identity"):
        with pytest.raises(UsageError, match="is both the identity Secret and a destination"):
            isec.check_apart(URL, ["/some/dir", same])
