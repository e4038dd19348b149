"""Exit codes, the typed errors that carry them, and the guard that turns them into one line on stderr.

Standard library only and cheap to import: the careful credential path raises these.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs ~10 ms on the careful path
if TYPE_CHECKING:
    from collections.abc import Callable

PROG = "kubectl-teleport"
DEBUG_ENV = "KUBECTL_TELEPORT_DEBUG"

OK = 0
INTERNAL = 1  # a bug: please report it (KUBECTL_TELEPORT_DEBUG=1 shows the traceback)
USAGE = 2  # bad flags, values or durations
NOT_LOGGED_IN = 3  # no identity or a damaged one in the data dir: run `kubectl-teleport login`
IDENTITY_REJECTED = 4  # identity expired or locked, token invalid/expired/used: log in again with a new token
ACCESS_DENIED = 5  # roles do not grant the Kubernetes cluster or user, unknown cluster, a role not impersonable
UNAVAILABLE = 6  # the issuer could not be reached or answered badly; bounded by the network deadline
TRUST = 7  # CA pin mismatch, a TLS certificate that does not chain to the cluster CA, or clock skew
LOCK_TIMEOUT = 8  # another process held the identity's lock for too long
UNSAFE_STATE = 9  # state directory: symlink, wrong owner, shared modes, permission denied, or not writable

EXIT_CODES = {
    OK: "success",
    INTERNAL: "internal error (a bug)",
    USAGE: "usage error: bad flags, values or durations",
    NOT_LOGGED_IN: "not logged in, or the local identity is missing or damaged",
    IDENTITY_REJECTED: "identity expired, locked or the join token was rejected",
    ACCESS_DENIED: "access denied or unknown Kubernetes cluster",
    UNAVAILABLE: "the issuer is unreachable or answered badly",
    TRUST: "CA pin mismatch, TLS verification failed, or the clocks disagree",
    LOCK_TIMEOUT: "timed out waiting for the identity lock",
    UNSAFE_STATE: "state directory unsafe, not ours, or not writable; or a Secret another writer changed",
}


class PluginError(Exception):
    """An expected failure: printed as one line, exits with `code` (the class's, unless given)."""

    code = INTERNAL

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return self.message


class UsageError(PluginError):
    """Bad flags, values, durations or KUBERNETES_EXEC_INFO."""

    code = USAGE


class NotLoggedIn(PluginError):
    """No identity, or a damaged one: run `kubectl-teleport login`."""

    code = NOT_LOGGED_IN


class IdentityRejected(PluginError):
    """The identity expired or was locked, or the join token was refused: a new token is needed."""

    code = IDENTITY_REJECTED


class AccessDenied(PluginError):
    """The bot's roles do not grant the cluster or user, or the cluster is unknown."""

    code = ACCESS_DENIED


class Unavailable(PluginError):
    """The issuer could not be reached or answered badly (time may fix it)."""

    code = UNAVAILABLE


class TrustError(PluginError):
    """A pin mismatch, a certificate that does not verify, or clocks too far apart."""

    code = TRUST


class LockTimeout(PluginError):
    """Another process held the identity's lock for too long (time may fix it)."""

    code = LOCK_TIMEOUT


class UnsafeState(PluginError):
    """The data dir (or a file in it) is unsafe, belongs to someone else, or cannot be written."""

    code = UNSAFE_STATE


class AnotherWriter(UnsafeState):
    """Another process wrote the bot's identity Secret since this one read it (`--store-identity`): this one
    stops renewing, so Teleport never sees two renewals from one generation."""


TRANSIENT = (Unavailable, LockTimeout)  # failures worth retrying soon (the daemon's backoff)


def report(err: BaseException) -> int:
    """Write the one line for `err` on stderr and return the exit code (tracebacks only with the debug env)."""
    if isinstance(err, PluginError):
        line, code = f"{PROG}: error: {err}\n", err.code
    elif isinstance(err, KeyboardInterrupt):
        line, code = f"{PROG}: interrupted\n", 130
    elif isinstance(err, OSError) and err.errno in (9, 32):  # EBADF, EPIPE: stdout closed under us
        line, code = (f"{PROG}: error: cannot write to standard output ({err.strerror}); run this command "
                      "through kubectl, or keep its output open\n"), USAGE
    else:
        import os

        if os.environ.get(DEBUG_ENV):
            raise err
        line, code = (f"{PROG}: internal error: {type(err).__name__}: {str(err)[:200]}; "
                      f"set {DEBUG_ENV}=1 to see the traceback and please report it\n"), INTERNAL
    try:
        sys.stderr.write(line)
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    return code


def guarded(run: Callable[[], int]) -> int:
    """Run a command; turn every failure into one line on stderr with a documented exit code."""
    try:
        return run()
    except BaseException as err:  # (SystemExit from argparse --help/--version passes through)
        if isinstance(err, SystemExit):
            raise
        return report(err)
