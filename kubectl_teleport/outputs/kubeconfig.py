"""Writing, merging and cleaning the kubeconfig entries that point kubectl at the plugin."""

from __future__ import annotations

import base64
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import yaml

from .. import launcher
from ..errors import UnsafeState, UsageError
from ..execcred import V1
from ..store import files

INSTALL_HINT = ("kubectl-teleport is not installed where this kubeconfig expects it: "
                "reinstall it with ./install.sh and run `kubectl-teleport login` again")


def plugin_command() -> str:
    """Absolute path of the installed `kubectl-teleport` for kubectl to exec: the fast launcher that runs this
    process (with pip, pipx or install.sh), else the one next to the interpreter or on PATH, symlinks (pipx's
    ~/.local/bin) followed to the launcher itself; never a pyenv shim, which would add ~150 ms to every call."""
    running = launcher.resolve(sys.argv[0])
    others = [launcher.resolve(p) for p in (str(Path(sys.executable).parent / "kubectl-teleport"),
                                            shutil.which("kubectl-teleport")) if p]
    runnable = [p for p in (running, *others) if os.path.isfile(p) and os.access(p, os.X_OK)]
    for path in runnable:
        if launcher.is_launcher(path):
            return path
    for path in others:  # an install without the launcher (pip's console script): beside, then on PATH
        if path in runnable and "shims" not in Path(path).parts:
            return path
    return running


def default_path() -> Path:
    """The first file of $KUBECONFIG, else ~/.kube/config (what kubectl would write to)."""
    env = os.environ.get("KUBECONFIG", "")
    first = next((p for p in env.split(os.pathsep) if p), None)
    return Path(first).expanduser() if first else Path.home() / ".kube" / "config"


def exec_user(data_dir: Path, kube_cluster: str, api_version: str = V1) -> dict[str, Any]:
    """The `user` entry: an exec stanza running `kubectl-teleport credentials`."""
    return plugin_user(["credentials", "--data-dir", str(data_dir.absolute()), "--kube-cluster", kube_cluster],
                       api_version)


def plugin_user(args: list[str], api_version: str = V1, install_hint: str = INSTALL_HINT) -> dict[str, Any]:
    """The `user` entry: an exec stanza running `kubectl-teleport` with `args`."""
    stanza: dict[str, Any] = {
        "apiVersion": api_version,
        "command": plugin_command(),
        "args": args,
        "installHint": install_hint,
        "provideClusterInfo": False,
    }
    if api_version == V1:
        stanza["interactiveMode"] = "Never"
    return {"exec": stanza}


def cluster_entry(server: str, ca_pems: list[str], tls_server_name: str) -> dict[str, Any]:
    """The `cluster` entry: server URL, its CA, and tls-server-name when the server gives one."""
    entry: dict[str, Any] = {
        "server": server,
        "certificate-authority-data": base64.b64encode("".join(ca_pems).encode()).decode(),
    }
    if tls_server_name:
        entry["tls-server-name"] = tls_server_name
    return entry


def resolved(path: Path) -> Path:
    """Where a kubeconfig really is: a symlinked one (dotfile managers make these) is written through to its
    target, as kubectl itself does."""
    return Path(os.path.realpath(path))


def load(path: Path) -> dict[str, Any]:
    """A kubeconfig as a dict (an empty Config when the file does not exist)."""
    path = resolved(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        text = ""
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read the kubeconfig {path} ({getattr(exc, 'strerror', None) or exc}); fix it "
                         "or choose another file with --kubeconfig") from None
    try:
        doc = yaml.safe_load(text) or {}
    except (yaml.YAMLError, RecursionError) as exc:
        raise UsageError(f"{path} is not valid YAML ({str(exc).splitlines()[0]}); fix it or choose another "
                          "file with --kubeconfig") from None
    if not isinstance(doc, dict):
        raise UsageError(f"{path} is not a kubeconfig; fix it or choose another file with --kubeconfig")
    doc.setdefault("apiVersion", "v1")
    doc.setdefault("kind", "Config")
    doc.setdefault("preferences", {})
    for key in ("clusters", "users", "contexts"):
        if doc.get(key) is None:
            doc[key] = []
        elif not isinstance(doc[key], list):
            raise UsageError(f"{path}: {key} is not a list, so this is not a kubeconfig; fix it or choose another "
                             "file with --kubeconfig")
    return doc


def preflight(path: Path) -> None:
    """Before a login spends its token: the kubeconfig parses and its directory takes a new file."""
    load(path)
    target = resolved(path)
    try:
        if not target.parent.exists():
            files.ensure_dir(target.parent)
        probe = files.Dir(target.parent, os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
        try:
            probe.reserve(target.name, 4096).discard()
        finally:
            probe.close()
    except OSError as exc:
        raise UnsafeState(f"cannot write the kubeconfig {target} ({exc.strerror or exc}); choose another file "
                          "with --kubeconfig, or fix the directory") from None


def _put(items: list[dict], key: str, name: str, value: dict) -> None:
    for item in items:
        if isinstance(item, dict) and item.get("name") == name:
            item[key] = value
            return
    items.append({"name": name, key: value})


def save(path: Path, doc: dict[str, Any]) -> None:
    """Write atomically with mode 0600 (the file may hold other users' secrets too)."""
    path = resolved(path)
    try:
        if not path.parent.exists():
            files.ensure_dir(path.parent)  # missing parents too, 0700 whatever the umask
        files.atomic_write(path, yaml.safe_dump(doc, default_flow_style=False, sort_keys=False).encode())
    except OSError as exc:
        raise UnsafeState(f"cannot write the kubeconfig {path} ({exc.strerror or exc}); fix the directory or "
                          "choose another file with --kubeconfig") from None


def merge(path: Path, name: str, cluster: dict, user: dict, namespace: str | None = None) -> bool:
    """Add or replace cluster, user and context `name`, keeping everything else; set current-context only
    when there was none. Returns whether current-context was set."""
    doc = load(path)
    _put(doc["clusters"], "cluster", name, cluster)
    _put(doc["users"], "user", name, user)
    context = {"cluster": name, "user": name}
    if namespace:
        context["namespace"] = namespace
    _put(doc["contexts"], "context", name, context)
    set_current = not doc.get("current-context")
    if set_current:
        doc["current-context"] = name
    save(path, doc)
    return set_current


def remove(path: Path, name: str) -> None:
    """Drop cluster, user and context `name`; clear current-context if it pointed there."""
    if not resolved(path).exists():
        return
    doc = load(path)
    for key in ("clusters", "users", "contexts"):
        doc[key] = [i for i in doc[key] if not (isinstance(i, dict) and i.get("name") == name)]
    if doc.get("current-context") == name:
        doc["current-context"] = ""
    save(path, doc)
