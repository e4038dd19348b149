"""Protobuf messages for Teleport's auth service, generated from our own proto/teleport_auth.proto.

Neutral wire types: the plugin's issuer and the devcluster may both use them. Messages only (no grpc stubs);
`tools/gen_proto.py` regenerates teleport_auth_pb2. Never imported on the exec hot path.
"""
