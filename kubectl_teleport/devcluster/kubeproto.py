"""Read a Secret that a client sent as Kubernetes protobuf (kubectl's typed clients, e.g. `kubectl create secret`).

The envelope is the 4 magic bytes `k8s\\0` and a `runtime.Unknown` message (1 typeMeta {1 apiVersion, 2 kind},
2 raw); `raw` is a `core/v1.Secret` (1 metadata, 2 data map<string, bytes>, 3 type, 4 stringData, 5 immutable),
whose ObjectMeta gives 1 name, 3 namespace, 6 resourceVersion, 11 labels, 12 annotations. Only the wire format is
decoded here (no generated code); the result has the JSON shape kubesecrets checks. Answers stay JSON, which
those clients also accept.
"""

from __future__ import annotations

import base64
from typing import Any

MAGIC = b"k8s\x00"
CONTENT_TYPE = "application/vnd.kubernetes.protobuf"


class ProtoError(ValueError):
    """Not a well-formed Kubernetes protobuf Secret."""


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ProtoError("truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) pairs: ints for varints, bytes for length-delimited; fixed-width ones skipped."""
    out: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            out.append((number, value))
        elif wire == 2:
            size, pos = _varint(buf, pos)
            if pos + size > len(buf):
                raise ProtoError("truncated field")
            out.append((number, buf[pos:pos + size]))
            pos += size
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        else:
            raise ProtoError(f"unsupported wire type {wire}")
    return out


def _text(value: int | bytes) -> str:
    if not isinstance(value, bytes):
        raise ProtoError("expected a string")
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtoError("invalid UTF-8") from None


def _entry(value: int | bytes) -> tuple[str, bytes]:
    if not isinstance(value, bytes):
        raise ProtoError("expected a map entry")
    key, val = "", b""
    for number, item in fields(value):
        if number == 1:
            key = _text(item)
        elif number == 2 and isinstance(item, bytes):
            val = item
    return key, val


def secret(body: bytes) -> dict[str, Any]:
    """A protobuf Secret as its JSON shape (data base64-encoded); ProtoError when it is not one."""
    if not body.startswith(MAGIC):
        raise ProtoError("missing the k8s protobuf magic")
    obj: dict[str, Any] = {}
    raw = b""
    for number, value in fields(body[len(MAGIC):]):
        if number == 1 and isinstance(value, bytes):
            for n, v in fields(value):
                obj[{1: "apiVersion", 2: "kind"}.get(n, "")] = _text(v)
        elif number == 2 and isinstance(value, bytes):
            raw = value
    obj.pop("", None)
    meta: dict[str, Any] = {}
    for number, value in fields(raw):
        if number == 1 and isinstance(value, bytes):
            for n, v in fields(value):
                if n in (1, 3, 6):
                    meta[{1: "name", 3: "namespace", 6: "resourceVersion"}[n]] = _text(v)
                elif n in (11, 12):
                    key, val = _entry(v)
                    meta.setdefault("labels" if n == 11 else "annotations", {})[key] = val.decode("utf-8", "replace")
        elif number == 2:
            key, val = _entry(value)
            obj.setdefault("data", {})[key] = base64.b64encode(val).decode()
        elif number == 3:
            obj["type"] = _text(value)
        elif number == 4:
            key, val = _entry(value)
            obj.setdefault("stringData", {})[key] = val.decode("utf-8", "replace")
        elif number == 5:
            obj["immutable"] = bool(value)
    obj["metadata"] = meta
    return obj
