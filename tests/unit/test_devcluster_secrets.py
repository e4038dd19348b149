"""The devcluster's Secrets: kube-apiserver's checks, the small server-side apply (ownership, conflicts, force,
removal, preconditions, no-op writes) and the protobuf reader of `kubectl create secret`."""

from __future__ import annotations

import base64

import pytest

from kubectl_teleport.devcluster import kubeproto
from kubectl_teleport.devcluster import kubesecrets as ks
from tests.protowire import field

NOW, LATER = "2026-01-01T00:00:00Z", "2026-01-01T00:05:00Z"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def body(data: dict[str, str] | None = None, **extra) -> dict:
    out = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "demo"}, **extra}
    if data is not None:
        out["data"] = {k: b64(v) for k, v in data.items()}
    return out


def want(data: dict[str, str] | None = None, **extra) -> tuple[dict, str | None]:
    return ks.desired(body(data, **extra), "demo", "s", strict=True)


def created(manager: str = "a", **data: str) -> dict:
    flat, _ = want(data)
    return ks.new_object("demo", "s", flat, manager, "Apply", NOW, 1001)


def managers(obj: dict) -> dict[str, set]:
    return {e["manager"]: ks.paths_of(e["fieldsV1"]) for e in obj["metadata"].get("managedFields", [])}


def error(exc: pytest.ExceptionInfo) -> tuple[int, str, str]:
    return exc.value.body["code"], exc.value.body["reason"], exc.value.body["message"]


def test_desired_merges_string_data_and_canonicalises_base64() -> None:
    flat, rv = ks.desired({"kind": "Secret", "metadata": {"name": "s", "resourceVersion": "7",
                                                            "labels": {"app": "x"}},
                           "data": {"a": "aGVs\nbG8=", "b": b64("old")}, "stringData": {"b": "new"}},
                          "demo", "s", strict=True)
    assert flat == {("data", "a"): b64("hello"), ("data", "b"): b64("new"), ("metadata", "labels", "app"): "x"}
    assert rv == "7"


@pytest.mark.parametrize(("change", "code", "text"), [
    ({"data": {"k": "not base64!"}}, 400, "illegal base64 data in data[k]"),
    ({"data": {"bad key": b64("v")}}, 422, 'Secret "s" is invalid: data[bad key]: Invalid value: "bad key"'),
    ({"metadata": {"name": "other"}}, 400, "the name of the object (other) does not match the name on the URL (s)"),
    ({"metadata": {"name": "s", "namespace": "x"}}, 400, "does not match the namespace sent on the request"),
    ({"kind": "ConfigMap"}, 400, "the kind in the data (ConfigMap) does not match the expected kind (Secret)"),
    ({"apiVersion": "apps/v1"}, 400, "the API version in the data (apps/v1) does not match"),
    ({"spec": {}}, 400, ".spec: field not declared in schema"),
    ({"metadata": {"name": "s", "labels": {"a": "has space"}}}, 422, 'metadata.labels: Invalid value: "has space"'),
    ({"data": {"k": 5}}, 400, "data must be a map of strings"),
])
def test_desired_refuses_like_kube_apiserver(change: dict, code: int, text: str) -> None:
    with pytest.raises(ks.SecretError) as exc:
        ks.desired({**body(), **change}, "demo", "s", strict=True)
    assert exc.value.body["code"] == code and text in exc.value.body["message"]
    assert exc.value.body["kind"] == "Status" and exc.value.body["reason"] == ("Invalid" if code == 422
                                                                                else "BadRequest")


def test_unknown_fields_pass_without_strict_validation() -> None:
    assert ks.desired({**body({"k": "v"}), "spec": {}}, "demo", "s", strict=False)[0] == {("data", "k"): b64("v")}


def test_create_defaults_type_and_records_the_manager() -> None:
    obj = created(tlscert="c")
    assert obj["type"] == "Opaque" and obj["data"] == {"tlscert": b64("c")}
    assert obj["metadata"]["resourceVersion"] == "1001" and obj["metadata"]["uid"]
    [entry] = obj["metadata"]["managedFields"]
    assert (entry["manager"], entry["operation"], entry["time"]) == ("a", "Apply", NOW)
    assert entry["fieldsV1"] == {"f:data": {"f:tlscert": {}}}  # the defaulted type is nobody's


def test_apply_by_the_same_manager_replaces_its_fields_and_drops_the_ones_it_no_longer_names() -> None:
    obj = created(tlscert="c1", key="k1")
    flat, _ = want({"tlscert": "c2"})
    new = ks.apply(obj, flat, None, "a", False, LATER, 1002)
    assert new["data"] == {"tlscert": b64("c2")} and new["metadata"]["resourceVersion"] == "1002"
    assert new["metadata"]["managedFields"][0]["time"] == LATER
    assert new["metadata"]["uid"] == obj["metadata"]["uid"]


def test_an_apply_that_changes_nothing_writes_nothing() -> None:
    obj = created(tlscert="c")
    assert ks.apply(obj, want({"tlscert": "c"})[0], None, "a", False, LATER, 1002) is None


def test_another_manager_with_a_different_value_conflicts_unless_forced() -> None:
    obj = created(tlscert="c", key="k")
    flat, _ = want({"tlscert": "other", "key": "k"})
    with pytest.raises(ks.SecretError) as exc:
        ks.apply(obj, flat, None, "b", False, LATER, 1002)
    assert error(exc) == (409, "Conflict", 'Apply failed with 1 conflict: conflict with "a": .data.tlscert')
    assert exc.value.body["details"]["causes"] == [
        {"reason": "FieldManagerConflict", "message": 'conflict with "a"', "field": ".data.tlscert"}]
    forced = ks.apply(obj, flat, None, "b", True, LATER, 1002)
    assert forced["data"]["tlscert"] == b64("other")
    assert managers(forced) == {"a": {("data", "key")}, "b": {("data", "tlscert"), ("data", "key")}}


def test_several_conflicts_are_listed_per_manager() -> None:
    obj = created(x="1", y="2")
    with pytest.raises(ks.SecretError) as exc:
        ks.apply(obj, want({"x": "3", "y": "4"})[0], None, "b", False, LATER, 1002)
    assert exc.value.body["message"] == 'Apply failed with 2 conflicts: conflicts with "a":\n- .data.x\n- .data.y'


def test_a_field_another_manager_also_owns_survives_when_one_stops_naming_it() -> None:
    obj = created(shared="s", mine="m")
    both = ks.apply(obj, want({"shared": "s"})[0], None, "b", False, LATER, 1002)  # same value: co-owned
    assert managers(both)["b"] == {("data", "shared")}
    after = ks.apply(both, want({"mine": "m"})[0], None, "a", False, LATER, 1003)
    assert after["data"] == {"shared": b64("s"), "mine": b64("m")}
    gone = ks.apply(after, want({})[0], None, "b", False, LATER, 1004)
    assert gone["data"] == {"mine": b64("m")} and set(managers(gone)) == {"a"}


def test_an_update_manager_is_named_with_its_version_and_time() -> None:
    flat, _ = want({"k": "v"})
    obj = ks.new_object("demo", "s", flat, "kubectl-create", "Update", NOW, 1001)
    with pytest.raises(ks.SecretError) as exc:
        ks.apply(obj, want({"k": "w"})[0], None, "tbot", False, LATER, 1002)
    assert exc.value.body["message"] == ('Apply failed with 1 conflict: conflict with "kubectl-create" using v1 at '
                                         f'{NOW}: .data.k')


def test_a_stale_resource_version_is_a_conflict() -> None:
    obj = created(k="v")
    with pytest.raises(ks.SecretError) as exc:
        ks.apply(obj, want({"k": "w"})[0], "999", "a", False, LATER, 1002)
    assert error(exc) == (409, "Conflict", 'Operation cannot be fulfilled on secrets "s": the object has been '
                          "modified; please apply your changes to the latest version and try again")
    assert ks.apply(obj, want({"k": "w"})[0], "1001", "a", False, LATER, 1002)["data"]["k"] == b64("w")


def test_type_cannot_change_and_immutable_freezes_data() -> None:
    obj = created(k="v")
    with pytest.raises(ks.SecretError) as exc:
        ks.apply(obj, {("type",): "kubernetes.io/tls"}, None, "a", False, LATER, 1002)
    assert error(exc)[:2] == (422, "Invalid") and "type: Invalid value" in exc.value.body["message"]
    frozen = ks.apply(obj, {**want({"k": "v"})[0], ("immutable",): True}, None, "a", False, LATER, 1002)
    with pytest.raises(ks.SecretError) as exc:
        ks.apply(frozen, {**want({"k": "changed"})[0], ("immutable",): True}, None, "a", False, LATER, 1003)
    assert "data: Forbidden: field is immutable when `immutable` is set" in exc.value.body["message"]


def test_missing_field_manager_is_invalid_patch_options() -> None:
    assert ks.missing_field_manager().body["message"] == ('PatchOptions.meta.k8s.io "" is invalid: fieldManager: '
                                                          "Required value: is required for apply patch")


def _entry(number: int, key: str, value: bytes) -> bytes:
    return field(number, field(1, key.encode()) + field(2, value))


def test_protobuf_secret_reads_as_its_json_shape() -> None:
    meta = field(1, b"s") + field(3, b"demo") + _entry(11, "app", b"x")
    secret = (field(1, meta) + _entry(2, "bin", b"\x00\xff") + field(3, b"Opaque") + _entry(4, "txt", b"hi")
              + field(5, 1))
    envelope = kubeproto.MAGIC + field(1, field(1, b"v1") + field(2, b"Secret")) + field(2, secret)
    obj = kubeproto.secret(envelope)
    assert obj == {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "immutable": True,
                   "data": {"bin": "AP8="}, "stringData": {"txt": "hi"},
                   "metadata": {"name": "s", "namespace": "demo", "labels": {"app": "x"}}}
    flat, _ = ks.desired(obj, "demo", "s", strict=True)
    assert flat[("data", "txt")] == b64("hi")
    with pytest.raises(kubeproto.ProtoError):
        kubeproto.secret(b"{}")
    with pytest.raises(kubeproto.ProtoError):
        kubeproto.secret(kubeproto.MAGIC + b"\x12\x10short")
