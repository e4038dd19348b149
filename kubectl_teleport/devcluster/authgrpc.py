"""The auth service's gRPC API with grpcio: `/proto.AuthService/GenerateUserCerts`, `/GetClusterCACert`, `/Ping`,
`/ListResources` and `/GetRole`, registered as generic handlers over the generated messages (no generated stubs).

grpcio listens on loopback in plaintext; `tlsfront.TLSFront` terminates TLS in front of it and says which
verified client certificate each connection carries. Every call is authenticated first, as in Teleport: a
caller whose bot is locked is refused whatever it asks (`TeleportAuthority.authenticate`). Teleport errors map to
gRPC codes as trace does (traceerr); a `version` metadata header that is present but unparseable is rejected (one
absent is fine).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from concurrent import futures
from typing import Any

import grpc
from google.protobuf import empty_pb2

from ..proto import teleport_auth_pb2 as pb
from . import traceerr
from .teleport_rules import TeleportAuthority

SERVICE = "proto.AuthService"
MAX_WORKERS = 32
MAX_MESSAGE = 4 * 1024 * 1024
# What Teleport's version parser (semver) accepts, roughly: MAJOR.MINOR.PATCH with optional pre-release/build.
_SEMVER = re.compile(r"^v?\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$")
_STATUS = {code.value[0]: code for code in grpc.StatusCode}

PeerLookup = Callable[[str], Any]


def _check_version(context: grpc.ServicerContext) -> None:
    for key, value in context.invocation_metadata() or ():
        if key == "version" and not _SEMVER.match(str(value)):
            raise traceerr.bad_parameter(f"the client reports an unparseable version {str(value)[:40]!r} in the "
                                         "'version' metadata; send a Teleport version like 17.0.0 or no header")


def _handler(name: str, call: Callable[[Any, grpc.ServicerContext], Any]) -> Callable[[Any, Any], Any]:
    """Run `call`; map its TraceError to a gRPC status; log one line per call (method and status only)."""
    def run(request: Any, context: grpc.ServicerContext) -> Any:
        status = grpc.StatusCode.OK
        try:
            _check_version(context)
            return call(request, context)
        except traceerr.TraceError as e:
            status = _STATUS[e.grpc_code]
            context.abort(status, e.message)
        except Exception as e:  # a bug: one line, no traceback, no secret
            status = grpc.StatusCode.INTERNAL
            sys.stderr.write(f"auth: internal error in {name}: {type(e).__name__}\n")
            context.abort(status, "internal error")
        finally:
            sys.stderr.write(f"auth: {SERVICE}/{name} {status.name}\n")
        return None  # unreachable: abort raises

    return run


def build_server(authority: TeleportAuthority, peer_for: PeerLookup) -> tuple[grpc.Server, int]:
    """A started grpcio server on a free loopback port (plaintext: the TLS front is in front); (server, port)."""

    def generate(request: pb.UserCertsRequest, context: grpc.ServicerContext) -> pb.Certs:
        return authority.generate_user_certs(peer_for(context.peer()), request)

    def cluster_ca(_request: empty_pb2.Empty, context: grpc.ServicerContext) -> pb.GetClusterCACertResponse:
        return pb.GetClusterCACertResponse(tls_ca=authority.cluster_ca_pem(peer_for(context.peer())).encode())

    def ping(_request: pb.PingRequest, context: grpc.ServicerContext) -> pb.PingResponse:
        return authority.ping(peer_for(context.peer()))

    def list_resources(request: pb.ListResourcesRequest, context: grpc.ServicerContext) -> pb.ListResourcesResponse:
        return authority.list_resources(peer_for(context.peer()), request)

    def get_role(request: pb.GetRoleRequest, context: grpc.ServicerContext) -> pb.RoleV6:
        return authority.get_role(peer_for(context.peer()), request)

    methods = {
        "GenerateUserCerts": grpc.unary_unary_rpc_method_handler(
            _handler("GenerateUserCerts", generate), request_deserializer=pb.UserCertsRequest.FromString,
            response_serializer=pb.Certs.SerializeToString),
        "GetClusterCACert": grpc.unary_unary_rpc_method_handler(
            _handler("GetClusterCACert", cluster_ca), request_deserializer=empty_pb2.Empty.FromString,
            response_serializer=pb.GetClusterCACertResponse.SerializeToString),
        "Ping": grpc.unary_unary_rpc_method_handler(
            _handler("Ping", ping), request_deserializer=pb.PingRequest.FromString,
            response_serializer=pb.PingResponse.SerializeToString),
        "ListResources": grpc.unary_unary_rpc_method_handler(
            _handler("ListResources", list_resources), request_deserializer=pb.ListResourcesRequest.FromString,
            response_serializer=pb.ListResourcesResponse.SerializeToString),
        "GetRole": grpc.unary_unary_rpc_method_handler(
            _handler("GetRole", get_role), request_deserializer=pb.GetRoleRequest.FromString,
            response_serializer=pb.RoleV6.SerializeToString),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=MAX_WORKERS, thread_name_prefix="auth-grpc"),
                         options=[("grpc.max_receive_message_length", MAX_MESSAGE), ("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, methods),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port
