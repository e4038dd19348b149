"""The reference devcluster: a Teleport stand-in (the proxy's one TLS-routed port, the web API that joins bots, the
auth gRPC service; docs/devcluster.md) and a Kubernetes endpoint; state in SQLite.

The plugin never imports this package.
"""
