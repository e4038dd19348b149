"""Exit codes and the one error type the CLI turns into a single line on stderr.

Standard library only: the exec hot path may raise these.
"""

from __future__ import annotations

import os
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
ACCESS_DENIED = 5  # the bot's roles do not grant the Kubernetes cluster or user, or the cluster is unknown
UNAVAILABLE = 6  # the issuer could not be reached or answered badly; bounded by the network deadline
TRUST = 7  # CA pin mismatch or a TLS certificate that does not chain to the pinned CA
LOCK_TIMEOUT = 8  # another process held the identity's lock for too long
UNSAFE_STATE = 9  # state directory has a symlink, wrong owner or permissions readable by others

EXIT_CODES = {
    OK: "success",
    INTERNAL: "internal error (a bug)",
    USAGE: "usage error: bad flags, values or durations",
    NOT_LOGGED_IN: "not logged in, or the local identity is missing or damaged",
    IDENTITY_REJECTED: "identity expired, locked or the join token was rejected",
    ACCESS_DENIED: "access denied or unknown Kubernetes cluster",
    UNAVAILABLE: "the issuer is unreachable or answered badly",
    TRUST: "CA pin mismatch or TLS verification failed",
    LOCK_TIMEOUT: "timed out waiting for the identity lock",
    UNSAFE_STATE: "unsafe state directory (symlink, owner or permissions)",
}


class PluginError(Exception):
    """An expected failure: printed as one line, exits with `code`."""

    def __init__(self, message: str, code: int = INTERNAL) -> None:
        super().__init__(message)
        self.message = message
        self.code = code

    def __str__(self) -> str:
        return self.message


def guarded(run: Callable[[], int]) -> int:
    """Run a command; turn expected failures into one line on stderr with a documented exit code."""
    try:
        return run()
    except PluginError as err:
        sys.stderr.write(f"{PROG}: error: {err}\n")
        return err.code
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG}: interrupted\n")
        return 130
    except Exception as exc:
        if os.environ.get(DEBUG_ENV):
            raise
        sys.stderr.write(f"{PROG}: internal error: {type(exc).__name__}: {str(exc)[:200]}; "
                         f"set {DEBUG_ENV}=1 to see the traceback and please report it\n")
        return INTERNAL
