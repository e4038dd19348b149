"""Small Teleport fakes for the client library's tests (issuer/webapi, auth, teleport), independent of the
devcluster:

- `WebApi`: an HTTPS `http.server` answering `/webapi/find` and `/webapi/host/credentials` (or only its `/v1`
  form) with Go-style JSON, its certificate from a "public" web CA the tests trust through `SSL_CERT_FILE`;
- `Auth`: a grpcio AuthService (generic handlers, our generated messages) on an insecure port, behind
  `AuthFront`, which terminates TLS like Teleport's auth (host-CA certificate for `*.teleport.cluster.local`,
  a client certificate verified against the user CA *if given*: grpcio's own TLS can only require one or not
  ask) and tells the handlers who the client was by its relay port;
- `Proxy`: one TCP port that routes by the ClientHello like a proxy with TLS routing: `teleport-auth@` in the
  ALPN → the auth front (TLS forwarded untouched), anything else → the web API; `route_auth=False` plays a
  proxy without TLS routing.

The fake issues certificates with Teleport's subject layout (CN, O roles, the 1.3.9999 OIDs), keeps the bot's
generation counter and locks the bot on a mismatch, and plays a v16 server (reads field 1 only, the join's TLS
key taken from the SSH key) or a v17+ one (fields 22/23; a request without them fails "ssh: no key found").
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import json
import socket
import ssl
import threading
import time
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kubectl_teleport import pki
from kubectl_teleport.proto import teleport_auth_pb2 as pb

UTC = datetime.timezone.utc
CLUSTER = "tele.example.com"
BOT = "robot"


# --- PKI ---------------------------------------------------------------------------------------------------


def _name(cn: str, extra: list[x509.NameAttribute] | None = None) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn), *(extra or [])])


def make_ca(cn: str) -> tuple[x509.Certificate, Any]:
    key = pki.generate_key()
    now = datetime.datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(_name(cn, [x509.NameAttribute(NameOID.ORGANIZATION_NAME, cn)]))
            .issuer_name(_name(cn, [x509.NameAttribute(NameOID.ORGANIZATION_NAME, cn)]))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
            .sign(key, hashes.SHA256()))
    return cert, key


def serving_cert(ca: tuple[x509.Certificate, Any], names: list[str], directory: Path, stem: str) -> tuple[Path, Path]:
    """A server certificate for `names` (DNS names or IPs) signed by `ca`, as cert and key files."""
    import ipaddress

    key = pki.generate_key()
    now = datetime.datetime.now(UTC)
    sans: list[x509.GeneralName] = []
    for n in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            sans.append(x509.DNSName(n))
    cert = (x509.CertificateBuilder().subject_name(_name(stem)).issuer_name(ca[0].subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca[1], hashes.SHA256()))
    cert_file, key_file = directory / f"{stem}.crt", directory / f"{stem}.key"
    cert_file.write_text(pki.cert_pem(cert))
    key_file.write_text(pki.private_key_pem(key))
    key_file.chmod(0o600)
    return cert_file, key_file


@dataclass
class Pki:
    host_ca: tuple[x509.Certificate, Any]
    user_ca: tuple[x509.Certificate, Any]
    web_ca: tuple[x509.Certificate, Any]
    web_ca_file: Path
    directory: Path

    @property
    def host_ca_pem(self) -> str:
        return pki.cert_pem(self.host_ca[0])

    @property
    def user_ca_pem(self) -> str:
        return pki.cert_pem(self.user_ca[0])

    @classmethod
    def create(cls, directory: Path) -> Pki:
        directory.mkdir(parents=True, exist_ok=True)
        web_ca = make_ca("public web CA")
        web_ca_file = directory / "web-ca.pem"
        web_ca_file.write_text(pki.cert_pem(web_ca[0]))
        return cls(make_ca(CLUSTER), make_ca(CLUSTER), web_ca, web_ca_file, directory)


# --- the cluster's state and issuing ----------------------------------------------------------------------------


@dataclass
class Cluster:
    """The fake's state: tokens, the bot's generation and lock, what each endpoint saw."""

    pki: Pki
    version: int = 17  # 16: field 1 only, join TLS key from the SSH key; 17+: fields 22/23
    suite: str = "balanced-v1"
    tokens: set[str] = field(default_factory=set)
    roles: list[str] = field(default_factory=lambda: ["kube-access"])
    kube_clusters: set[str] = field(default_factory=lambda: {"prod"})
    generation: int = 0
    instance_id: str = "0b0b0b0b-1111-2222-3333-444455556666"
    locked: bool = False
    events: list[tuple[str, Any]] = field(default_factory=list)  # (what, detail) in order
    lock: threading.Lock = field(default_factory=threading.Lock)
    fail_join: tuple[int, dict] | None = None  # (status, JSON body) to answer every join with
    only_v1_join: bool = False
    renew_abort: tuple[int, str] | None = None  # (grpc status code, message) for the next GenerateUserCerts
    marker: list[str] = field(default_factory=list)  # what the client recorded before sending (tests set it)
    delay: float = 0.0  # seconds GenerateUserCerts takes before answering

    def record(self, what: str, detail: Any = None) -> None:
        with self.lock:
            self.events.append((what, detail))

    def seen(self, what: str) -> list[Any]:
        with self.lock:
            return [d for w, d in self.events if w == what]

    # certificates ---------------------------------------------------------------------------------------------

    def issue(self, public_key: Any, *, expires: datetime.datetime, generation: int | None, roles: list[str],
              kube_cluster: str = "", impersonator: str = "", not_after_cap: datetime.datetime | None = None
              ) -> str:
        now = datetime.datetime.now(UTC)
        not_after = min(expires, now + datetime.timedelta(hours=24), *(c for c in [not_after_cap] if c))
        attrs = [x509.NameAttribute(NameOID.COMMON_NAME, f"bot-{BOT}")]
        attrs += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, r) for r in roles]
        attrs.append(x509.NameAttribute(pki.OID_TELEPORT_CLUSTER, CLUSTER))
        if kube_cluster:
            attrs.append(x509.NameAttribute(pki.OID_KUBE_CLUSTER, kube_cluster))
            attrs.append(x509.NameAttribute(pki.OID_KUBE_USERS, f"bot-{BOT}"))
            attrs.append(x509.NameAttribute(pki.OID_KUBE_GROUPS, "system:masters"))
        if generation is not None:
            attrs.append(x509.NameAttribute(pki.OID_RENEWABLE, "true"))
            attrs.append(x509.NameAttribute(pki.OID_GENERATION, str(generation)))
        if impersonator:
            attrs.append(x509.NameAttribute(pki.OID_IMPERSONATOR, impersonator))
            attrs.append(x509.NameAttribute(pki.OID_DISALLOW_REISSUE, "true"))
        attrs.append(x509.NameAttribute(pki.OID_BOT_NAME, BOT))
        attrs.append(x509.NameAttribute(pki.OID_BOT_INSTANCE_ID, self.instance_id))
        issuer_cert, issuer_key = self.pki.user_ca
        cert = (x509.CertificateBuilder().subject_name(x509.Name(attrs)).issuer_name(issuer_cert.subject)
                .public_key(public_key).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=1)).not_valid_after(not_after)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                .sign(issuer_key, hashes.SHA256()))
        return pki.cert_pem(cert)

    def ca_lists(self) -> tuple[list[str], list[str]]:
        return [self.pki.user_ca_pem, self.pki.host_ca_pem], ["cert-authority ecdsa-sha2-nistp256 AAAAuser\n",
                                                              "@cert-authority * ecdsa-sha2-nistp256 AAAAhost\n"]

    # the join (HTTP) ------------------------------------------------------------------------------------------

    def join(self, body: dict[str, Any]) -> tuple[int, dict]:
        self.record("join", body)
        if self.fail_join is not None:
            return self.fail_join
        token = body.get("token")
        with self.lock:
            if token not in self.tokens:
                return 403, {"error": {"message": f'key "/tokens/{token}" is not found'}}
            self.tokens.discard(token)
        if body.get("role") != "Bot":
            return 400, {"error": {"message": "token does not allow role"}}
        ssh_key = pki.load_ssh_public_key(base64.b64decode(body["public_ssh_key"], validate=True))
        tls_pem = base64.b64decode(body["public_tls_key"], validate=True)
        tls_key = ssh_key if self.version < 17 else pki.load_tls_public_key(tls_pem)
        expires = datetime.datetime.fromisoformat(body["expires"].replace("Z", "+00:00"))
        self.generation = 1
        cert = self.issue(tls_key, expires=expires, generation=1, roles=[f"bot-{BOT}"])
        tls_cas, ssh_cas = self.ca_lists()

        def b64(text: str) -> str:
            return base64.b64encode(text.encode()).decode()

        return 200, {"ssh": b64("ssh-cert-v01 placeholder\n"), "tls": b64(cert),
                     "tls_ca_certs": [b64(c) for c in tls_cas], "ssh_ca_certs": [b64(c) for c in ssh_cas]}


# --- the web API ------------------------------------------------------------------------------------------------


class WebApi:
    """HTTPS web API of the fake proxy."""

    def __init__(self, cluster: Cluster, directory: Path, public_addr: str = "") -> None:
        self.cluster = cluster
        self.public_addr = public_addr
        cert_file, key_file = serving_cert(cluster.pki.web_ca, ["127.0.0.1", "localhost"], directory, "web")
        self._ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._ctx.load_cert_chain(cert_file, key_file)
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, status: int, obj: Any) -> None:
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                fake.cluster.record("http", ("GET", self.path))
                if self.path == "/webapi/find":
                    self._reply(200, fake.find())
                else:
                    self._reply(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
                fake.cluster.record("http", ("POST", self.path))
                join_paths = ["/v1/webapi/host/credentials"]
                if not fake.cluster.only_v1_join:
                    join_paths.append("/webapi/host/credentials")
                if self.path in join_paths:
                    self._reply(*fake.cluster.join(body))
                else:
                    self._reply(404, {"error": {"message": "not found"}})

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def finish_request(self, request: Any, client_address: Any) -> None:
                try:
                    request = fake._ctx.wrap_socket(request, server_side=True)
                except (OSError, ssl.SSLError):
                    return
                super().finish_request(request, client_address)

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def find(self) -> dict[str, Any]:
        c = self.cluster
        auth: dict[str, Any] = {"type": "local", "second_factor": "off", "private_key_policy": "none"}
        if c.version >= 17 and c.suite:
            auth["signature_algorithm_suite"] = c.suite
        return {"auth": auth, "proxy": {"kube": {"enabled": True, "listen_addr": "0.0.0.0:3026"},
                                       "ssh": {"listen_addr": "0.0.0.0:3023", "public_addr": self.public_addr,
                                               "web_listen_addr": "0.0.0.0:3080"},
                                       "db": {}, "tls_routing_enabled": True},
                "server_version": f"{c.version}.1.2", "min_client_version": f"{c.version - 1}.0.0-aa",
                "cluster_name": CLUSTER, "automatic_upgrades": False, "edition": "community", "fips": False}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- the auth service -------------------------------------------------------------------------------------------


class Auth:
    """grpcio AuthService on an insecure loopback port; the TLS in front is AuthFront's."""

    def __init__(self, cluster: Cluster) -> None:
        import grpc

        self.grpc = grpc
        self.cluster = cluster
        self.peers: dict[int, x509.Certificate | None] = {}  # relay port -> client certificate
        handlers = {"GenerateUserCerts": self.generate_user_certs, "GetClusterCACert": self.get_cluster_ca_cert,
                    "Ping": self.ping}
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            "proto.AuthService", {k: grpc.unary_unary_rpc_method_handler(v) for k, v in handlers.items()}),))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def client_cert(self, context: Any) -> x509.Certificate | None:
        port = int(context.peer().rsplit(":", 1)[1])
        return self.peers.get(port)

    def get_cluster_ca_cert(self, request: bytes, context: Any) -> bytes:
        self.cluster.record("grpc", ("GetClusterCACert", self.client_cert(context) is not None))
        return pb.GetClusterCACertResponse(tls_ca=self.cluster.pki.host_ca_pem.encode()).SerializeToString()

    def ping(self, request: bytes, context: Any) -> bytes:
        return pb.PingResponse(cluster_name=CLUSTER, server_version=f"{self.cluster.version}.1.2").SerializeToString()

    def _key(self, req: pb.UserCertsRequest, context: Any) -> Any:
        if self.cluster.version < 17:
            if not req.public_key:
                context.abort(self.grpc.StatusCode.UNKNOWN, "ssh: no key found")
            return pki.load_ssh_public_key(req.public_key)
        if not req.ssh_public_key and not req.tls_public_key:
            context.abort(self.grpc.StatusCode.INVALID_ARGUMENT, "at least one public key must be provided")
        ssh = pki.load_ssh_public_key(req.ssh_public_key)
        tls = pki.load_tls_public_key(req.tls_public_key)
        if not pki.public_keys_equal(ssh, tls):
            context.abort(self.grpc.StatusCode.INVALID_ARGUMENT, "ssh and tls keys differ")
        return tls

    def generate_user_certs(self, request: bytes, context: Any) -> bytes:
        c = self.cluster
        req = pb.UserCertsRequest.FromString(request)
        client = self.client_cert(context)
        c.record("grpc", ("GenerateUserCerts", req, list(c.marker)))
        if c.delay:
            time.sleep(c.delay)
        if client is None:
            context.abort(self.grpc.StatusCode.UNAUTHENTICATED, "client certificate required")
        ident = pki.identity_of(client)
        if c.renew_abort is not None:
            code, message = c.renew_abort
            c.renew_abort = None
            context.abort(_status(self.grpc, code), message)
        if c.locked:
            context.abort(self.grpc.StatusCode.PERMISSION_DENIED,
                          f'lock targeting User:"bot-{BOT}" is in force: generation mismatch')
        key = self._key(req, context)
        expires = req.expires.ToDatetime(tzinfo=UTC)
        tls_cas, ssh_cas = c.ca_lists()
        if req.use_role_requests:
            unknown = [r for r in req.role_requests if r not in c.roles]
            if unknown:
                context.abort(self.grpc.StatusCode.PERMISSION_DENIED, f"user bot-{BOT} may not impersonate {unknown}")
            if req.kubernetes_cluster and req.kubernetes_cluster not in c.kube_clusters:
                context.abort(self.grpc.StatusCode.INVALID_ARGUMENT,
                              f'kubernetes cluster "{req.kubernetes_cluster}" is not registered in this teleport '
                              "cluster; you can list registered kubernetes clusters using 'tsh kube ls'")
            cert = c.issue(key, expires=expires, generation=None, roles=list(req.role_requests),
                           kube_cluster=req.kubernetes_cluster, impersonator=f"bot-{BOT}",
                           not_after_cap=client.not_valid_after_utc)
            c.record("kube", req.kubernetes_cluster)
        else:
            presented = ident.generation
            if presented != c.generation:
                c.locked = True
                context.abort(self.grpc.StatusCode.PERMISSION_DENIED,
                              f"renewable cert generation mismatch: stored={c.generation}, presented={presented}")
            c.generation += 1
            cert = c.issue(key, expires=expires, generation=c.generation, roles=[f"bot-{BOT}"])
            c.record("renewed", c.generation)
        return pb.Certs(ssh=b"ssh-cert-v01 placeholder\n", tls=cert.encode(),
                        tls_ca_certs=[t.encode() for t in tls_cas],
                        ssh_ca_certs=[s.encode() for s in ssh_cas]).SerializeToString()

    def close(self) -> None:
        self.server.stop(grace=None)


def _status(grpc: Any, code: int) -> Any:
    return next(s for s in grpc.StatusCode if s.value[0] == code)


class _Relay:
    """Accept loop plus byte pumps (threads), closed with close()."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self._stop = threading.Event()
        self._socks: list[socket.socket] = []
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._socks.append(sock)
            threading.Thread(target=self._guarded, args=(sock,), daemon=True).start()

    def _guarded(self, sock: socket.socket) -> None:
        try:
            self.handle(sock)
        except OSError:
            with contextlib.suppress(OSError):
                sock.close()

    def handle(self, sock: socket.socket) -> None:
        raise NotImplementedError

    def splice(self, a: socket.socket, b: socket.socket) -> None:
        self._socks.append(b)
        t = threading.Thread(target=_pump, args=(b, a), daemon=True)
        t.start()
        _pump(a, b)
        t.join(10)

    def close(self) -> None:
        self._stop.set()
        for s in self._socks:
            with contextlib.suppress(OSError):
                s.close()
        self.listener.close()


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


class AuthFront(_Relay):
    """Teleport auth's TLS: host-CA certificate for *.teleport.cluster.local, ALPN h2, client certificate
    verified against the user CA when one is given; the plaintext HTTP/2 goes to grpcio."""

    def __init__(self, auth: Auth, cluster: Cluster, directory: Path) -> None:
        self.auth = auth
        cert_file, key_file = serving_cert(cluster.pki.host_ca, ["teleport.cluster.local", "*.teleport.cluster.local"],
                                           directory, "auth")
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert_file, key_file)
        self.ctx.load_verify_locations(cadata=cluster.pki.user_ca_pem)
        self.ctx.verify_mode = ssl.CERT_OPTIONAL
        self.ctx.set_alpn_protocols(["h2"])
        super().__init__()

    def handle(self, sock: socket.socket) -> None:
        sock.settimeout(10)
        try:
            tls = self.ctx.wrap_socket(sock, server_side=True)
        except (OSError, ssl.SSLError):
            sock.close()
            return
        tls.settimeout(None)
        der = tls.getpeercert(binary_form=True)
        upstream = socket.create_connection(("127.0.0.1", self.auth.port), timeout=10)
        upstream.settimeout(None)
        self.auth.peers[upstream.getsockname()[1]] = x509.load_der_x509_certificate(der) if der else None
        self.splice(tls, upstream)


def _client_hello(sock: socket.socket) -> bytes:
    data = b""
    while len(data) < 5:
        chunk = sock.recv(5 - len(data))
        if not chunk:
            return data
        data += chunk
    need = 5 + int.from_bytes(data[3:5], "big")
    while len(data) < need:
        chunk = sock.recv(need - len(data))
        if not chunk:
            break
        data += chunk
    return data


class Proxy(_Relay):
    """The proxy's one port: `teleport-auth@` in the ClientHello → auth (raw TLS), else → the web API."""

    def __init__(self, web: WebApi, front: AuthFront, route_auth: bool = True) -> None:
        self.web, self.front, self.route_auth = web, front, route_auth
        self.routed: list[str] = []
        super().__init__()

    def handle(self, sock: socket.socket) -> None:
        sock.settimeout(10)
        hello = _client_hello(sock)
        to_auth = self.route_auth and b"teleport-auth@" in hello
        self.routed.append("auth" if to_auth else "web")
        upstream = socket.create_connection(("127.0.0.1", self.front.port if to_auth else self.web.port), timeout=10)
        upstream.sendall(hello)
        sock.settimeout(None)
        upstream.settimeout(None)
        self.splice(sock, upstream)


@dataclass
class Teleport:
    """A whole fake: cluster state, web API, auth service and its TLS front, the routing proxy."""

    cluster: Cluster
    web: WebApi
    auth: Auth
    front: AuthFront
    proxy: Proxy

    @property
    def address(self) -> str:
        return self.proxy.address

    def add_token(self, token: str = "tok-" + "5" * 28) -> str:
        self.cluster.tokens.add(token)
        return token

    def close(self) -> None:
        for part in (self.proxy, self.front, self.web, self.auth):
            part.close()


def start(directory: Path, *, version: int = 17, suite: str = "balanced-v1", route_auth: bool = True,
          fake_pki: Pki | None = None) -> Teleport:
    cluster = Cluster(fake_pki or Pki.create(directory / "pki"), version=version, suite=suite)
    web = WebApi(cluster, directory)
    auth = Auth(cluster)
    front = AuthFront(auth, cluster, directory)
    proxy = Proxy(web, front, route_auth=route_auth)
    web.public_addr = proxy.address
    return Teleport(cluster, web, auth, front, proxy)
