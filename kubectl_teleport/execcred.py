"""ExecCredential input (KUBERNETES_EXEC_INFO) and output.

Standard library only at import time (hot path: built-in `posix`, not `os`); `json` and `os` are imported
lazily by the careful paths.
"""

import posix

V1 = "client.authentication.k8s.io/v1"
V1BETA1 = "client.authentication.k8s.io/v1beta1"
VERSIONS = (V1, V1BETA1)
ENV = "KUBERNETES_EXEC_INFO"
ENV_BYTES = ENV.encode()  # posix.environ has bytes keys

# client-go marshals ExecCredential with these exact prefixes; the Python client with json.dumps spacing.
_FAST_PREFIXES = {
    f'{{"kind":"ExecCredential","apiVersion":"{V1}","spec":{{': V1,
    f'{{"kind":"ExecCredential","apiVersion":"{V1BETA1}","spec":{{': V1BETA1,
    f'{{"apiVersion": "{V1}", "kind": "ExecCredential", "spec": {{': V1,
    f'{{"apiVersion": "{V1BETA1}", "kind": "ExecCredential", "spec": {{': V1BETA1,
}


def fast_version(info: str | None) -> str | None:
    """The requested apiVersion when KUBERNETES_EXEC_INFO has the usual shape; None means: parse it fully."""
    if info is None:
        return V1BETA1
    info = info.rstrip()  # client-go's JSON encoder ends it with "\n" (kubectl 1.37 does)
    if not info:
        return V1BETA1
    if not info.endswith("}}"):
        return None
    for prefix, version in _FAST_PREFIXES.items():
        if info.startswith(prefix):
            return version
    return None


def requested_version(info: str | None = None) -> str:
    """Parse KUBERNETES_EXEC_INFO fully; UsageError when it is malformed or of another version."""
    import json

    from .errors import UsageError

    if info is None:
        import os

        info = os.environ.get(ENV)
    if info is None or not info.strip():
        return V1BETA1
    try:
        if len(info) > 1 << 20:
            raise ValueError("too long")
        obj = json.loads(info)
    except (ValueError, RecursionError):  # RecursionError: nested too deeply to be an ExecCredential
        raise UsageError(f"{ENV} is not valid JSON; run this command through kubectl or unset {ENV}") from None
    version = obj.get("apiVersion") if isinstance(obj, dict) else None
    if not isinstance(obj, dict) or obj.get("kind", "ExecCredential") != "ExecCredential":
        raise UsageError(f"{ENV} is not an ExecCredential object; run this command through kubectl")
    if version not in VERSIONS:
        raise UsageError(f"{ENV} asks for apiVersion {str(version)[:60]!r}, which this plugin does not speak; "
                         f"set the kubeconfig's exec apiVersion to {V1} or {V1BETA1}")
    return version


def render(api_version: str, status: bytes) -> bytes:
    """The full ExecCredential JSON (one line) around a pre-rendered status object."""
    return (b'{"apiVersion":"' + api_version.encode() +
            b'","kind":"ExecCredential","spec":{"interactive":false},"status":' + status + b"}\n")


def status_json(cert_pem: str, key_pem: str, expiration: str) -> bytes:
    """The compact JSON `status` object stored in the cache."""
    import json

    return json.dumps({"clientCertificateData": cert_pem, "clientKeyData": key_pem,
                       "expirationTimestamp": expiration}, separators=(",", ":")).encode()


def write_stdout(data: bytes) -> None:
    """Write all of `data` to fd 1 (no io buffering layers involved)."""
    view = memoryview(data)
    while view:
        view = view[posix.write(1, view):]
