"""The reference devcluster: an auth service (protocol v1) and a Kubernetes endpoint, state in SQLite.

The plugin never imports this package.
"""
