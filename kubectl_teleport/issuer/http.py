"""HTTP/JSON client for the issuance protocol (docs/protocol.md): TLS verified against the pinned CA,
every call inside one overall deadline, bounded reads, retries with jitter only where repeating is safe.

A certificate that fails verification only because it is not yet valid (or already expired) for this machine's
clock is reported as clock skew, with the offset read from the server's `Date` header."""

from __future__ import annotations

import contextlib
import json
import random
import signal
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from .. import __version__, fmt
from ..errors import ACCESS_DENIED, IDENTITY_REJECTED, UNAVAILABLE, USAGE, PluginError, TrustError, Unavailable

DEFAULT_DEADLINE = 15.0
MAX_RESPONSE = 1 << 20
USER_AGENT = f"kubectl-teleport/{__version__}"

_HINTS = {
    "invalid_token": (IDENTITY_REJECTED, "the token is unknown or was already used; ask an admin for a new one"),
    "token_expired": (IDENTITY_REJECTED, "the token expired; ask an admin for a new one"),
    "unauthenticated": (IDENTITY_REJECTED, "log in again with a new token"),
    "bot_locked": (IDENTITY_REJECTED,
                   "the bot is locked; an admin must remove the lock, or log in again with a new token"),
    "generation_mismatch": (IDENTITY_REJECTED,
                            "the identity was renewed from another copy and the bot is now locked; "
                            "log in again with a new token"),
    "access_denied": (ACCESS_DENIED, "ask an admin to grant the bot's roles this Kubernetes cluster or user"),
    "unknown_kube_cluster": (ACCESS_DENIED, "check the name with `kubectl-teleport kube ls`"),
    "bad_request": (USAGE, "check the command's arguments"),
}


class ApiError(PluginError):
    """The server answered with a protocol error."""

    def __init__(self, action: str, status: int, code: str, message: str) -> None:
        exit_code, hint = _HINTS.get(code, (UNAVAILABLE, "try again later"))
        super().__init__(f"{action} failed: {message} ({code}); {hint}", exit_code)
        self.status = status
        self.api_code = code


class Deadline:
    """One time budget shared by every request of a command."""

    def __init__(self, seconds: float = DEFAULT_DEADLINE, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._end = clock() + seconds

    def left(self) -> float:
        return max(0.0, self._end - self._clock())


def tls_context(ca_pems: list[str] | None, identity_file: Path | None = None) -> ssl.SSLContext:
    """A client context verifying against the pinned CAs (or nothing, for the pin check only)."""
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

    Only the proxy variables are honoured (not netrc or SSL_CERT_FILE, as httpx's trust_env would); TLS is still
    verified end to end against the pinned CA through the CONNECT tunnel.
    """
    import urllib.request

    host = address.rpartition(":")[0].strip("[]")
    if urllib.request.proxy_bypass_environment(host):
        return None
    proxies = urllib.request.getproxies_environment()
    return proxies.get("https") or proxies.get("all")


class Client:
    """A connection to one proxy; use as a context manager."""

    def __init__(self, proxy: str, ca_pems: list[str] | None, *, identity_file: Path | None = None,
                 deadline: Deadline | None = None) -> None:
        self.proxy = proxy
        self.deadline = deadline or Deadline()
        self._http = httpx.Client(base_url=f"https://{proxy}/v1", verify=tls_context(ca_pems, identity_file),
                                  headers={"User-Agent": USER_AGENT}, proxy=http_proxy_for(proxy),
                                  trust_env=False)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.close()

    def call(self, action: str, method: str, path: str, body: dict | None = None, *,
             retry: bool = True) -> dict[str, Any]:
        """Send one request (with retries when `retry`), return the JSON object, raise PluginError."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._once(action, method, path, body)
            except _Retryable as err:
                pause = min(2.0, 0.2 * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)  # noqa: S311
                if not retry or attempt >= 4 or self.deadline.left() <= pause + 0.5:
                    raise err.error from None
                time.sleep(pause)

    def _once(self, action: str, method: str, path: str, body: dict | None) -> dict[str, Any]:
        left = self.deadline.left()
        if left <= 0:
            raise Unavailable(f"{action} failed: no answer from {self.proxy} in time; check that the proxy "
                              "is reachable and try again")
        content = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if content is not None else {}
        try:
            with hard_deadline(left), self._http.stream(method, path, content=content, headers=headers,
                                                         timeout=httpx.Timeout(left)) as resp:
                raw = read_capped(resp, action, self.deadline)
                status = resp.status_code
        except DeadlineHit:
            raise Unavailable(f"{action} failed: {self.proxy} did not answer in time; check that the proxy is "
                              "reachable and try again") from None
        except httpx.TimeoutException:
            raise _Retryable(Unavailable(f"{action} failed: {self.proxy} did not answer in time; check that "
                                         "the proxy is reachable and try again")) from None
        except httpx.TransportError as exc:
            code = verify_code(exc)
            if code in (NOT_YET_VALID, EXPIRED):
                raise clock_skew_error(action, self.proxy, code) from None
            if code is not None:
                raise TrustError(f"{action} failed: the server at {self.proxy} presented a certificate that "
                                 "does not chain to the pinned cluster CA; check --proxy, or log in again if "
                                 "the cluster's CA was rotated") from None
            raise _Retryable(Unavailable(f"{action} failed: cannot reach {self.proxy} ({short_error(exc)}); "
                                         "check that the proxy is running and reachable")) from None
        return _decode(action, status, raw)


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


class _Retryable(Exception):
    def __init__(self, error: PluginError) -> None:
        super().__init__(str(error))
        self.error = error


def read_capped(resp: httpx.Response, action: str, deadline: Deadline) -> bytes:
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


def _decode(action: str, status: int, raw: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(raw)
    except ValueError:
        obj = None
    if not isinstance(obj, dict):
        err = Unavailable(f"{action} failed: the server answered HTTP {status} without a JSON object; "
                          "check that --proxy names the cluster's auth proxy")
        if status >= 500:
            raise _Retryable(err)
        raise err
    if 200 <= status < 300:
        return obj
    detail = obj.get("error") if isinstance(obj.get("error"), dict) else {}
    code = str(detail.get("code") or f"http_{status}")[:60]
    message = str(detail.get("message") or f"HTTP {status}")[:300].rstrip(".")
    error = ApiError(action, status, code, message)
    if status >= 500:
        raise _Retryable(error)
    raise error


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


def expect(obj: dict[str, Any], action: str, **fields: type) -> dict[str, Any]:
    """Check that the answer has `fields` of the given types; PluginError(UNAVAILABLE) otherwise."""
    for name, kind in fields.items():
        value = obj.get(name)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise Unavailable(f"{action} failed: the server's answer has no valid {name!r}; "
                              "the proxy may speak another protocol version")
    return obj
