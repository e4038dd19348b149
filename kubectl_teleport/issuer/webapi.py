"""Teleport's proxy web API: discovery (`GET /webapi/find`) and the bot join (`POST /webapi/host/credentials`).

Like Teleport's own web client, the proxy's web certificate is verified against the system trust store
(`ssl.create_default_context()`: OpenSSL's defaults, so `SSL_CERT_FILE`/`SSL_CERT_DIR` work), or not at all
with `insecure=True` (the caller warns loudly). `$HTTPS_PROXY`/`$NO_PROXY` are honoured (a CONNECT tunnel),
every request lives inside the command's one deadline, and answers are read up to 1 MiB.

The join follows Go's encoding/json conventions: `[]byte` fields are standard base64 with padding, `expires` is
an RFC 3339 time. It is sent once: a join is never retried (the token may already be spent), except on a 404,
which means the proxy does not know the path at all (older proxies serve it under `/v1`).
"""

from __future__ import annotations

import json
import random
import ssl
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

import httpx

from .. import pki
from ..errors import IdentityRejected, PluginError, TrustError, Unavailable
from . import certs as certs_mod
from . import http
from .certs import Certs
from .teleport import version_major

FIND_PATH = "/webapi/find"
JOIN_PATHS = ("/webapi/host/credentials", "/v1/webapi/host/credentials")
BOT_ROLE = "Bot"
NEW_TOKEN = "ask an admin for a new join token (`tctl tokens add --type=bot --bot-name=NAME`)"  # noqa: S105


@dataclass(frozen=True)
class Discovery:
    """What `/webapi/find` says about a Teleport cluster (webclient.PingResponse, the parts we use)."""

    proxy: str  # the address asked, HOST:PORT
    cluster_name: str
    server_version: str
    tls_routing: bool
    suite: str  # signature algorithm suite: "" (none: before v17), legacy, balanced-v1, fips-v1, hsm-v1
    web_public_addr: str = ""  # proxy.ssh.public_addr: the web proxy's public address
    ssh_public_addr: str = ""  # proxy.ssh.ssh_public_addr
    kube_enabled: bool = False
    kube_public_addr: str = ""
    kube_listen_addr: str = ""
    min_client_version: str = ""
    clock_offset: float = 0.0  # the proxy's clock minus ours, from its `Date` header (0 when it sent none)

    @property
    def server_major(self) -> int | None:
        return version_major(self.server_version)


def suite_name(value: Any) -> str:
    """A signature algorithm suite from JSON: Teleport's text form, or the enum number; unknown text is kept."""
    if isinstance(value, bool):
        return ""
    if isinstance(value, int):
        return pki.SUITE_NUMBERS.get(value, str(value))
    if isinstance(value, str):
        text = value.strip().lower()
        return "" if text in ("", "signature_algorithm_suite_unspecified") else text
    return ""


def go_time(moment: datetime) -> str:
    """A time as Go's encoding/json writes a `time.Time`: RFC 3339 in UTC (whole seconds suffice)."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def join_body(token: str, key: pki.PrivateKey, expires: datetime) -> dict[str, str]:
    """The JSON of a bot's `RegisterUsingTokenRequest`: one key in Teleport's two encodings."""
    return {
        "token": token,
        "role": BOT_ROLE,
        "public_tls_key": certs_mod.go_bytes(pki.tls_public_key_pem(key).encode()),
        "public_ssh_key": certs_mod.go_bytes(pki.ssh_public_key_line(key).encode()),
        "expires": go_time(expires),
    }


def web_context(insecure: bool) -> ssl.SSLContext:
    """TLS for the proxy's web port: the system trust store (OpenSSL's defaults), or none with `insecure`."""
    if insecure:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx = ssl.create_default_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


class _Retry(Exception):
    def __init__(self, error: PluginError) -> None:
        super().__init__(str(error))
        self.error = error


class WebClient:
    """The web API of one proxy; use as a context manager."""

    def __init__(self, proxy: str, *, insecure: bool = False, deadline: http.Deadline | None = None) -> None:
        self.proxy = proxy
        self.insecure = insecure
        self.deadline = deadline or http.Deadline()
        self._last_offset = 0.0
        self._http = httpx.Client(base_url=f"https://{proxy}", verify=web_context(insecure),
                                  headers={"User-Agent": http.USER_AGENT}, proxy=http.http_proxy_for(proxy),
                                  trust_env=False)

    def __enter__(self) -> WebClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.close()

    # discovery --------------------------------------------------------------------------------------------------

    def find(self) -> Discovery:
        """`GET /webapi/find` (idempotent: retried on timeouts and 5xx within the deadline)."""
        action = f"contacting the Teleport proxy {self.proxy}"
        attempt = 0
        while True:
            attempt += 1
            try:
                status, obj = self._request(action, "GET", FIND_PATH, None)
                offset = self._last_offset
                if status >= 500:
                    raise _Retry(Unavailable(f"{action} failed: HTTP {status} ({error_message(obj, status)}); "
                                             "try again later"))
                break
            except _Retry as err:
                pause = min(2.0, 0.2 * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)  # noqa: S311
                if attempt >= 4 or self.deadline.left() <= pause + 0.5:
                    raise err.error from None
                time.sleep(pause)
        if status != 200 or not isinstance(obj, dict):
            raise Unavailable(f"{action} failed: HTTP {status} from {FIND_PATH}; check that --proxy names a "
                              "Teleport proxy's web address (HOST:PORT, usually port 443)")
        return replace(parse_find(self.proxy, obj), clock_offset=offset)

    # the join ---------------------------------------------------------------------------------------------------

    def host_credentials(self, body: dict[str, str], cluster: str) -> Certs:
        """`POST /webapi/host/credentials` once (a 404 tries the `/v1` path); the bot's first certificates."""
        action = f"joining {cluster or self.proxy} with the token"
        token = body.get("token", "")
        for path in JOIN_PATHS:
            try:
                status, obj = self._request(action, "POST", path, body, sent_hint=True)
            except _Retry as err:
                raise err.error from None
            if status == 404 and path != JOIN_PATHS[-1]:
                continue
            if 200 <= status < 300:
                return certs_mod.from_json(obj, action)
            raise join_error(action, status, redact(error_message(obj, status), token))
        raise AssertionError("unreachable")

    # transport --------------------------------------------------------------------------------------------------

    def _request(self, action: str, method: str, path: str, body: dict | None, *,
                 sent_hint: bool = False) -> tuple[int, Any]:
        """One request: (status, decoded JSON or None). Transport failures raise _Retry(Unavailable) or a
        TrustError; `sent_hint` adds that the token may have been used when the request may have left."""
        left = self.deadline.left()
        maybe_used = "; the token may have been used: if logging in again says so, " + NEW_TOKEN if sent_hint else ""
        if left <= 0:
            raise Unavailable(f"{action} failed: no answer from {self.proxy} in time; check that the proxy is "
                              "reachable and try again")
        content = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if content is not None else {}
        try:
            with http.hard_deadline(left), self._http.stream(method, path, content=content, headers=headers,
                                                             timeout=httpx.Timeout(left)) as resp:
                raw = http.read_capped(resp, action, self.deadline)
                status = resp.status_code
                self._last_offset = _offset(resp.headers.get("date"))
        except http.DeadlineHit:
            raise Unavailable(f"{action} failed: {self.proxy} did not answer in time{maybe_used}") from None
        except httpx.TimeoutException as exc:
            if isinstance(exc, httpx.ConnectTimeout):  # nothing was sent
                maybe_used = ""
            raise _Retry(Unavailable(f"{action} failed: {self.proxy} did not answer in time; check that the "
                                     f"proxy is reachable{maybe_used}")) from None
        except httpx.TransportError as exc:
            raise self._transport_error(action, exc, maybe_used) from None
        try:
            obj = json.loads(raw) if raw else None
        except ValueError:
            obj = None
        return status, obj

    def _transport_error(self, action: str, exc: httpx.TransportError, maybe_used: str) -> PluginError | _Retry:
        code = http.verify_code(exc)
        if code in (http.NOT_YET_VALID, http.EXPIRED):
            return http.clock_skew_error(action, self.proxy, code)
        if code is not None:
            return TrustError(f"{action} failed: the web certificate of {self.proxy} is not trusted by this "
                              "machine's trust store; install the CA that signed it (or point SSL_CERT_FILE at "
                              "it), check --proxy, or for a lab only pass --insecure")
        if isinstance(exc, httpx.ConnectError):  # nothing was sent
            maybe_used = ""
        return _Retry(Unavailable(f"{action} failed: cannot reach {self.proxy} ({http.short_error(exc)}); "
                                  f"check that the proxy is running and reachable{maybe_used}"))


def _offset(date: str | None) -> float:
    """The server's clock minus ours, from an HTTP `Date` header (whole seconds; 0 without a usable one)."""
    import email.utils

    from .. import clock

    if not date:
        return 0.0
    try:
        return email.utils.parsedate_to_datetime(date).timestamp() - clock.now()
    except (TypeError, ValueError):
        return 0.0


def _dict(obj: Any, key: str) -> dict[str, Any]:
    value = obj.get(key) if isinstance(obj, dict) else None
    return value if isinstance(value, dict) else {}


def _str(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    return value.strip() if isinstance(value, str) else ""


def parse_find(proxy: str, obj: dict[str, Any]) -> Discovery:
    """The Discovery record out of a `/webapi/find` answer (unknown fields ignored, missing ones empty)."""
    proxy_settings = _dict(obj, "proxy")
    ssh, kube = _dict(proxy_settings, "ssh"), _dict(proxy_settings, "kube")
    cluster = _str(obj, "cluster_name")
    if not cluster:
        raise Unavailable(f"contacting the Teleport proxy {proxy} failed: its {FIND_PATH} answer names no "
                          "cluster; check that --proxy names a Teleport proxy")
    return Discovery(
        proxy=proxy, cluster_name=cluster, server_version=_str(obj, "server_version"),
        tls_routing=proxy_settings.get("tls_routing_enabled") is True,
        suite=suite_name(_dict(obj, "auth").get("signature_algorithm_suite")),
        web_public_addr=_str(ssh, "public_addr"), ssh_public_addr=_str(ssh, "ssh_public_addr"),
        kube_enabled=kube.get("enabled") is True, kube_public_addr=_str(kube, "public_addr"),
        kube_listen_addr=_str(kube, "listen_addr"), min_client_version=_str(obj, "min_client_version"),
    )


def error_message(obj: Any, status: int) -> str:
    """The message of a Teleport (gravitational/trace) error body, `{"error": {"message": ...}}`, on one line."""
    message = ""
    if isinstance(obj, dict):
        inner = obj.get("error")
        if isinstance(inner, dict):
            message = inner.get("message") if isinstance(inner.get("message"), str) else ""
        elif isinstance(inner, str):
            message = inner
        if not message and isinstance(obj.get("message"), str):
            message = obj["message"]
    message = " ".join(str(message).split())[:300].rstrip(".")
    return message or f"HTTP {status}"


def redact(message: str, token: str) -> str:
    """The message without the token (a server may echo the key it looked up)."""
    return message.replace(token, "<token>") if token else message


def join_error(action: str, status: int, message: str) -> PluginError:
    """One line for a refused join: a bad, expired or used token needs a new one; anything else says what."""
    if status in (400, 401, 403):
        return IdentityRejected(f"{action} failed: {message}; the token is invalid, expired or already used: "
                                f"{NEW_TOKEN}")
    if status == 404:
        return Unavailable(f"{action} failed: the proxy has no {JOIN_PATHS[0]} (HTTP 404); check that --proxy "
                           "names a Teleport proxy's web address")
    if status == 429:
        return Unavailable(f"{action} failed: the proxy is rate limiting ({message}); wait a minute and try "
                           "again with the same token")
    return Unavailable(f"{action} failed: HTTP {status} ({message}); the token may have been used: if logging in "
                       f"again says so, {NEW_TOKEN}")
