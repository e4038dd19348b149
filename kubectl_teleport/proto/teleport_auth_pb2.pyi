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

class ListResourcesRequest(_message.Message):
    __slots__ = ("resource_type", "namespace", "limit", "start_key")
    RESOURCE_TYPE_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    START_KEY_FIELD_NUMBER: _ClassVar[int]
    resource_type: str
    namespace: str
    limit: int
    start_key: str
    def __init__(self, resource_type: _Optional[str] = ..., namespace: _Optional[str] = ..., limit: _Optional[int] = ..., start_key: _Optional[str] = ...) -> None: ...

class ListResourcesResponse(_message.Message):
    __slots__ = ("resources", "next_key", "total_count")
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    NEXT_KEY_FIELD_NUMBER: _ClassVar[int]
    TOTAL_COUNT_FIELD_NUMBER: _ClassVar[int]
    resources: _containers.RepeatedCompositeFieldContainer[PaginatedResource]
    next_key: str
    total_count: int
    def __init__(self, resources: _Optional[_Iterable[_Union[PaginatedResource, _Mapping]]] = ..., next_key: _Optional[str] = ..., total_count: _Optional[int] = ...) -> None: ...

class PaginatedResource(_message.Message):
    __slots__ = ("kubernetes_server",)
    KUBERNETES_SERVER_FIELD_NUMBER: _ClassVar[int]
    kubernetes_server: KubernetesServerV3
    def __init__(self, kubernetes_server: _Optional[_Union[KubernetesServerV3, _Mapping]] = ...) -> None: ...

class KubernetesServerV3(_message.Message):
    __slots__ = ("kind", "sub_kind", "version", "metadata", "spec")
    KIND_FIELD_NUMBER: _ClassVar[int]
    SUB_KIND_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    kind: str
    sub_kind: str
    version: str
    metadata: Metadata
    spec: KubernetesServerSpecV3
    def __init__(self, kind: _Optional[str] = ..., sub_kind: _Optional[str] = ..., version: _Optional[str] = ..., metadata: _Optional[_Union[Metadata, _Mapping]] = ..., spec: _Optional[_Union[KubernetesServerSpecV3, _Mapping]] = ...) -> None: ...

class KubernetesServerSpecV3(_message.Message):
    __slots__ = ("version", "hostname", "host_id", "cluster")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    HOST_ID_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    version: str
    hostname: str
    host_id: str
    cluster: KubernetesClusterV3
    def __init__(self, version: _Optional[str] = ..., hostname: _Optional[str] = ..., host_id: _Optional[str] = ..., cluster: _Optional[_Union[KubernetesClusterV3, _Mapping]] = ...) -> None: ...

class KubernetesClusterV3(_message.Message):
    __slots__ = ("kind", "sub_kind", "version", "metadata")
    KIND_FIELD_NUMBER: _ClassVar[int]
    SUB_KIND_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    kind: str
    sub_kind: str
    version: str
    metadata: Metadata
    def __init__(self, kind: _Optional[str] = ..., sub_kind: _Optional[str] = ..., version: _Optional[str] = ..., metadata: _Optional[_Union[Metadata, _Mapping]] = ...) -> None: ...

class Metadata(_message.Message):
    __slots__ = ("name", "namespace", "description", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    name: str
    namespace: str
    description: str
    labels: _containers.ScalarMap[str, str]
    def __init__(self, name: _Optional[str] = ..., namespace: _Optional[str] = ..., description: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class GetRoleRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class RoleV6(_message.Message):
    __slots__ = ("kind", "sub_kind", "version", "metadata", "spec")
    KIND_FIELD_NUMBER: _ClassVar[int]
    SUB_KIND_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    kind: str
    sub_kind: str
    version: str
    metadata: Metadata
    spec: RoleSpecV6
    def __init__(self, kind: _Optional[str] = ..., sub_kind: _Optional[str] = ..., version: _Optional[str] = ..., metadata: _Optional[_Union[Metadata, _Mapping]] = ..., spec: _Optional[_Union[RoleSpecV6, _Mapping]] = ...) -> None: ...

class RoleSpecV6(_message.Message):
    __slots__ = ("allow", "deny")
    ALLOW_FIELD_NUMBER: _ClassVar[int]
    DENY_FIELD_NUMBER: _ClassVar[int]
    allow: RoleConditions
    deny: RoleConditions
    def __init__(self, allow: _Optional[_Union[RoleConditions, _Mapping]] = ..., deny: _Optional[_Union[RoleConditions, _Mapping]] = ...) -> None: ...

class RoleConditions(_message.Message):
    __slots__ = ("rules", "impersonate")
    RULES_FIELD_NUMBER: _ClassVar[int]
    IMPERSONATE_FIELD_NUMBER: _ClassVar[int]
    rules: _containers.RepeatedCompositeFieldContainer[Rule]
    impersonate: ImpersonateConditions
    def __init__(self, rules: _Optional[_Iterable[_Union[Rule, _Mapping]]] = ..., impersonate: _Optional[_Union[ImpersonateConditions, _Mapping]] = ...) -> None: ...

class Rule(_message.Message):
    __slots__ = ("resources", "verbs", "where", "actions")
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    VERBS_FIELD_NUMBER: _ClassVar[int]
    WHERE_FIELD_NUMBER: _ClassVar[int]
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    resources: _containers.RepeatedScalarFieldContainer[str]
    verbs: _containers.RepeatedScalarFieldContainer[str]
    where: str
    actions: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, resources: _Optional[_Iterable[str]] = ..., verbs: _Optional[_Iterable[str]] = ..., where: _Optional[str] = ..., actions: _Optional[_Iterable[str]] = ...) -> None: ...

class ImpersonateConditions(_message.Message):
    __slots__ = ("users", "roles", "where")
    USERS_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    WHERE_FIELD_NUMBER: _ClassVar[int]
    users: _containers.RepeatedScalarFieldContainer[str]
    roles: _containers.RepeatedScalarFieldContainer[str]
    where: str
    def __init__(self, users: _Optional[_Iterable[str]] = ..., roles: _Optional[_Iterable[str]] = ..., where: _Optional[str] = ...) -> None: ...
