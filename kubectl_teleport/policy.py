"""The credential policy: pure decisions over what is cached and what time it is (no I/O, standard library only).

`commands/credentials.py` is the shell that does the reading, locking and renewing these functions decide.

Times are Unix seconds on the *local* clock. A certificate's NotBefore/NotAfter are the *server's* clock, so
`timing` maps them onto the local one: Teleport issues certificates with NotBefore one minute before its own
"now" (the devcluster too), which tells how far the two clocks are apart at the moment of issue.

Built-in modules only, and no `from __future__` import: the waiters of a stampede import this (`waiter.py`).
"""

BACKDATE = 60  # seconds the issuer puts NotBefore before its own "now"
RENEW_FRACTION = 1 / 3  # renew once less than this share of the lifetime is left
EXPIRY_FRACTION = 0.1  # expirationTimestamp: NotAfter minus this share of the lifetime ...
MAX_EXPIRY_MARGIN = 60  # ... but never more than a minute before it
DUE_BUDGET = 1.5  # seconds the network may take for a renewal while a valid certificate is cached
MIN_TTL, MAX_TTL = 60, 86400  # what login may ask for (Teleport caps renewable identities at 24 h)

# what `decide` says the shell should do
SERVE = "serve"  # print the cached certificate, nothing else
TRY_LOCK = "try-lock"  # due but valid: renew if the lock is free right now, else serve the cached one
WAIT_LOCK = "wait-lock"  # nothing valid cached: wait for the lock, then decide again
READER_SERVE = "reader-serve"  # a reader (no write access) with a valid certificate: serve, never renew
READER_FAIL = "reader-fail"  # a reader with nothing valid: fail, renewing is the bot user's job
RENEW = "renew"  # under the lock and still due: renew


class Timing:
    """When a certificate becomes due (`renew_at`), what kubectl is told (`expires_at`), and NotAfter, all on
    the local clock; `skew` is local minus server time (positive: our clock is ahead)."""

    __slots__ = ("expires_at", "lifetime", "not_after", "renew_at", "skew")

    def __init__(self, renew_at: int, expires_at: int, not_after: int, lifetime: float, skew: float) -> None:
        self.renew_at, self.expires_at, self.not_after = renew_at, expires_at, not_after
        self.lifetime, self.skew = lifetime, skew


def server_now(not_before: float, not_after: float) -> float:
    """The issuer's clock when it signed a certificate (NotBefore is backdated by BACKDATE)."""
    return min(not_before + BACKDATE, not_after)


def timing(not_before: float, not_after: float, received_at: float) -> Timing:
    """Margins scaled with the lifetime the server granted, on the local clock.

    A 1 h certificate is due after 40 min and reported to kubectl as expiring 1 min before NotAfter; a 1 min
    one is due after 40 s and reported 6 s before NotAfter. So every lifetime gives a cached, usable
    certificate, whatever the clock difference between this machine and the issuer.
    """
    issued = server_now(not_before, not_after)
    skew = received_at - issued
    lifetime = max(0.0, not_after - issued)
    local_after = not_after + skew
    expires_at = int(local_after - min(MAX_EXPIRY_MARGIN, lifetime * EXPIRY_FRACTION))
    renew_at = min(int(local_after - lifetime * RENEW_FRACTION), expires_at)
    return Timing(renew_at, expires_at, int(local_after), lifetime, skew)


def renew_at(not_before: float, not_after: float, skew: float = 0.0) -> float:
    """When a certificate (an identity, say) becomes due on the local clock."""
    issued = server_now(not_before, not_after)
    return not_after + skew - max(0.0, not_after - issued) * RENEW_FRACTION


def decide(fresh: bool, valid: bool, *, writable: bool, locked: bool = False) -> str:
    """What to do with a cache entry that is `fresh` (not due) and/or `valid` (not expired).

    `locked`: the caller holds the identity's lock (it re-read the entry under it).
    """
    if fresh:
        return SERVE
    if not writable:
        return READER_SERVE if valid else READER_FAIL
    if locked:
        return RENEW
    return TRY_LOCK if valid else WAIT_LOCK


def network_budget(valid: bool, timeout: float) -> float:
    """Seconds a renewal may spend on the network: short while a valid certificate can be served instead
    (a hanging issuer must not hold every kubectl call), the full `--timeout` when nothing valid is left."""
    return min(timeout, DUE_BUDGET) if valid else timeout


def serve_after_failure(valid_now: bool) -> bool:
    """A renewal failed: serve the cached certificate (with one warning) whenever it is still valid, whatever
    the failure (network, server, full or read-only disk, a bug)."""
    return valid_now
