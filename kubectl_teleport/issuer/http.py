"""What the Teleport client's transports share: the command's one deadline, the `$HTTPS_PROXY` choice, bounded
reads under a hard deadline, TLS contexts, and the diagnosis of certificates that fail only because the clocks
disagree.

A certificate that fails verification only because it is not yet valid (or already expired) for this machine's
clock is reported as clock skew, with the offset read from the server's `Date` header."""

from __future__ import annotations

import contextlib
import signal
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from .. import __version__, fmt
from ..errors import TrustError, Unavailable

TYPE_CHECKING = False
if TYPE_CHECKING:
    import httpx  # imported where used: the gRPC path (renewals, Kubernetes certificates) never needs it

DEFAULT_DEADLINE = 15.0
MAX_RESPONSE = 1 << 20
USER_AGENT = f"kubectl-teleport/{__version__}"


class Deadline:
    """One time budget shared by every request of a command."""

    def __init__(self, seconds: float = DEFAULT_DEADLINE, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._end = clock() + seconds

    def left(self) -> float:
        return max(0.0, self._end - self._clock())


def tls_context(ca_pems: list[str] | None, identity_file: Path | None = None) -> ssl.SSLContext:
    """A client context verifying against `ca_pems` only (or nothing at all when None)."""
    if ca_pems is None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx = ssl.create_default_context(cadata="\n".join(ca_pems))  # only these CAs, never system roots
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if identity_file is not None:
        ctx.load_cert_chain(str(identity_file))
    return ctx


def http_proxy_for(address: str) -> str | None:
    """The HTTP proxy to tunnel through: $HTTPS_PROXY (or $ALL_PROXY) unless $NO_PROXY covers the host.

    Only the proxy variables are honoured (not netrc, as httpx's trust_env would); TLS is still verified end to
    end through the CONNECT tunnel.
    """
    import urllib.request

    host = address.rpartition(":")[0].strip("[]")
    if urllib.request.proxy_bypass_environment(host):
        return None
    proxies = urllib.request.getproxies_environment()
    return proxies.get("https") or proxies.get("all")


class DeadlineHit(BaseException):
    """Raised by the alarm when a request outlives the deadline (a BaseException so no library swallows it)."""


@contextlib.contextmanager
def hard_deadline(seconds: float) -> Iterator[None]:
    """Bound a whole request, not just each socket operation: httpx's timeouts apply per read, so a server
    dripping one byte at a time could otherwise hold kubectl forever. Main thread only (SIGALRM)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def fire(*_: object) -> None:
        raise DeadlineHit

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def read_capped(resp: httpx.Response, action: str, deadline: Deadline) -> bytes:
    import httpx

    chunks, size = [], 0
    for chunk in resp.iter_bytes():
        size += len(chunk)
        if size > MAX_RESPONSE:
            raise Unavailable(f"{action} failed: the server's answer is larger than {MAX_RESPONSE} bytes; "
                              "check that --proxy names the cluster's auth proxy")
        if deadline.left() <= 0:
            raise httpx.ReadTimeout("deadline")
        chunks.append(chunk)
    return b"".join(chunks)


NOT_YET_VALID, EXPIRED, UNKNOWN_VERIFY = 9, 10, -1  # OpenSSL's X509_V_ERR_CERT_NOT_YET_VALID / _HAS_EXPIRED
SKEW_TOLERANCE = 30.0


def verify_code(exc: BaseException) -> int | None:
    """OpenSSL's verify code when `exc` is (or wraps) a certificate verification failure, else None."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen.verify_code or UNKNOWN_VERIFY
        seen = seen.__cause__ or seen.__context__
    return UNKNOWN_VERIFY if "CERTIFICATE_VERIFY_FAILED" in str(exc) else None


def server_clock_offset(proxy: str, timeout: float = 3.0) -> float | None:
    """Seconds the server's clock is ahead of ours (negative: behind), from its `Date` header; None when it
    cannot be told. Reads one unverified answer (nothing is sent but a GET of `/`)."""
    import email.utils

    import httpx

    from .. import clock

    ctx = tls_context(None)
    try:
        with httpx.Client(verify=ctx, trust_env=False, timeout=timeout) as http:
            date = http.get(f"https://{proxy}/").headers.get("date")
        theirs = email.utils.parsedate_to_datetime(date).timestamp() if date else None
    except (httpx.HTTPError, ValueError, TypeError, OSError):
        return None
    return None if theirs is None else theirs - clock.now()


def clock_skew_error(action: str, proxy: str, code: int) -> TrustError:
    """A certificate rejected only for its validity times: say that the clocks disagree, and by how much."""
    state = "not valid yet" if code == NOT_YET_VALID else "expired"
    offset = server_clock_offset(proxy)
    if offset is None or abs(offset) < SKEW_TOLERANCE:
        return TrustError(f"{action} failed: the certificate of {proxy} is {state} by this machine's clock; "
                          "check that the clock is right (NTP) and retry")
    side = "behind" if offset > 0 else "ahead of"
    return TrustError(f"{action} failed: this machine's clock is {fmt.format_duration(abs(offset))} {side} the "
                      f"clock of {proxy}, so its certificate looks {state}; fix the clock (NTP) and retry")


def short_error(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:120]
