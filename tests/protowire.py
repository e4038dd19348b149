"""A minimal protobuf encoder written from the wire format, not from the protobuf runtime: the independent oracle
that tests compare our messages' bytes with, and the way they hand-encode what Teleport or Kubernetes send."""

from __future__ import annotations


def varint(n: int) -> bytes:
    """A base-128 varint; negative int64s are ten-byte two's complement."""
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def vi(number: int, value: int) -> bytes:
    """A varint field (wire type 0)."""
    return varint(number << 3) + varint(value)


def ld(number: int, payload: bytes | str) -> bytes:
    """A length-delimited field (wire type 2): bytes, a string or an embedded message."""
    data = payload.encode() if isinstance(payload, str) else payload
    return varint(number << 3 | 2) + varint(len(data)) + data


def field(number: int, payload: bytes | str | int) -> bytes:
    """A varint field for an int, a length-delimited one otherwise."""
    return vi(number, payload) if isinstance(payload, int) else ld(number, payload)
