"""Teleport's error kinds (gravitational/trace) and how they reach clients: gRPC status codes and HTTP statuses.

The mapping follows trace's conventions: AccessDenied → PERMISSION_DENIED / 403, BadParameter →
INVALID_ARGUMENT / 400, NotFound → NOT_FOUND / 404, LimitExceeded → RESOURCE_EXHAUSTED / 429, NotImplemented →
UNIMPLEMENTED / 501, and a plain
(unclassified) error → UNKNOWN / 500. Messages never carry a token, key or certificate.
"""

from __future__ import annotations

from typing import Any

ACCESS_DENIED = "access_denied"
BAD_PARAMETER = "bad_parameter"
NOT_FOUND = "not_found"
LIMIT_EXCEEDED = "limit_exceeded"
NOT_IMPLEMENTED = "not_implemented"
UNKNOWN = "unknown"  # an error trace does not classify (Go's errors.New)

# kind → (gRPC status code number, HTTP status)
_CODES = {
    ACCESS_DENIED: (7, 403),
    BAD_PARAMETER: (3, 400),
    NOT_FOUND: (5, 404),
    LIMIT_EXCEEDED: (8, 429),
    NOT_IMPLEMENTED: (12, 501),
    UNKNOWN: (2, 500),
}


class TraceError(Exception):
    """A Teleport-style error: a kind (see the constants) and one message."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        if kind not in _CODES:
            raise ValueError(f"unknown error kind {kind!r}")
        self.kind = kind
        self.message = message

    @property
    def grpc_code(self) -> int:
        return _CODES[self.kind][0]

    @property
    def http_status(self) -> int:
        return _CODES[self.kind][1]

    def body(self) -> dict[str, Any]:
        """The JSON body of an HTTP error, as trace writes it."""
        return {"error": {"message": self.message}}


def access_denied(message: str) -> TraceError:
    return TraceError(ACCESS_DENIED, message)


def bad_parameter(message: str) -> TraceError:
    return TraceError(BAD_PARAMETER, message)


def not_found(message: str) -> TraceError:
    return TraceError(NOT_FOUND, message)


def not_implemented(message: str) -> TraceError:
    return TraceError(NOT_IMPLEMENTED, message)


def unknown(message: str) -> TraceError:
    return TraceError(UNKNOWN, message)
