"""The network side: talking to the cluster that issues identities and Kubernetes certificates.

Never imported on the exec hot path; modules here import their heavy libraries (TLS, HTTP, crypto) freely.
"""
