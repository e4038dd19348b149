import datetime

from google.protobuf import empty_pb2 as _empty_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class UserCertsRequest(_message.Message):
    __slots__ = ("public_key", "username", "expires", "format", "route_to_cluster", "access_requests", "kubernetes_cluster", "node_name", "usage", "role_requests", "use_role_requests", "ssh_public_key", "tls_public_key", "reissuable_role_impersonation")
    class CertUsage(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        All: _ClassVar[UserCertsRequest.CertUsage]
        SSH: _ClassVar[UserCertsRequest.CertUsage]
        Kubernetes: _ClassVar[UserCertsRequest.CertUsage]
        Database: _ClassVar[UserCertsRequest.CertUsage]
        App: _ClassVar[UserCertsRequest.CertUsage]
        WindowsDesktop: _ClassVar[UserCertsRequest.CertUsage]
    All: UserCertsRequest.CertUsage
    SSH: UserCertsRequest.CertUsage
    Kubernetes: UserCertsRequest.CertUsage
    Database: UserCertsRequest.CertUsage
    App: UserCertsRequest.CertUsage
    WindowsDesktop: UserCertsRequest.CertUsage
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    ROUTE_TO_CLUSTER_FIELD_NUMBER: _ClassVar[int]
    ACCESS_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    KUBERNETES_CLUSTER_FIELD_NUMBER: _ClassVar[int]
    NODE_NAME_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    ROLE_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    USE_ROLE_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    SSH_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    TLS_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    REISSUABLE_ROLE_IMPERSONATION_FIELD_NUMBER: _ClassVar[int]
    public_key: bytes
    username: str
    expires: _timestamp_pb2.Timestamp
    format: str
    route_to_cluster: str
    access_requests: _containers.RepeatedScalarFieldContainer[str]
    kubernetes_cluster: str
    node_name: str
    usage: UserCertsRequest.CertUsage
    role_requests: _containers.RepeatedScalarFieldContainer[str]
    use_role_requests: bool
    ssh_public_key: bytes
    tls_public_key: bytes
    reissuable_role_impersonation: bool
    def __init__(self, public_key: _Optional[bytes] = ..., username: _Optional[str] = ..., expires: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., format: _Optional[str] = ..., route_to_cluster: _Optional[str] = ..., access_requests: _Optional[_Iterable[str]] = ..., kubernetes_cluster: _Optional[str] = ..., node_name: _Optional[str] = ..., usage: _Optional[_Union[UserCertsRequest.CertUsage, str]] = ..., role_requests: _Optional[_Iterable[str]] = ..., use_role_requests: _Optional[bool] = ..., ssh_public_key: _Optional[bytes] = ..., tls_public_key: _Optional[bytes] = ..., reissuable_role_impersonation: _Optional[bool] = ...) -> None: ...

class Certs(_message.Message):
    __slots__ = ("ssh", "tls", "tls_ca_certs", "ssh_ca_certs")
    SSH_FIELD_NUMBER: _ClassVar[int]
    TLS_FIELD_NUMBER: _ClassVar[int]
    TLS_CA_CERTS_FIELD_NUMBER: _ClassVar[int]
    SSH_CA_CERTS_FIELD_NUMBER: _ClassVar[int]
    ssh: bytes
    tls: bytes
    tls_ca_certs: _containers.RepeatedScalarFieldContainer[bytes]
    ssh_ca_certs: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, ssh: _Optional[bytes] = ..., tls: _Optional[bytes] = ..., tls_ca_certs: _Optional[_Iterable[bytes]] = ..., ssh_ca_certs: _Optional[_Iterable[bytes]] = ...) -> None: ...

class GetClusterCACertResponse(_message.Message):
    __slots__ = ("tls_ca",)
    TLS_CA_FIELD_NUMBER: _ClassVar[int]
    tls_ca: bytes
    def __init__(self, tls_ca: _Optional[bytes] = ...) -> None: ...

class PingRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PingResponse(_message.Message):
    __slots__ = ("cluster_name", "server_version", "proxy_public_addr")
    CLUSTER_NAME_FIELD_NUMBER: _ClassVar[int]
    SERVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    PROXY_PUBLIC_ADDR_FIELD_NUMBER: _ClassVar[int]
    cluster_name: str
    server_version: str
    proxy_public_addr: str
    def __init__(self, cluster_name: _Optional[str] = ..., server_version: _Optional[str] = ..., proxy_public_addr: _Optional[str] = ...) -> None: ...
