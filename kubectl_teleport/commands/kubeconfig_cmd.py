"""`kubectl-teleport kubeconfig --tbot-dir DIR`: a kubeconfig whose user reads a running tbot's destination.

The clusters (server, CA, tls-server-name) and context names are those of tbot's own `DIR/kubeconfig.yaml`
(`<teleport-cluster>-<kube-cluster>`; several with tbot's `kubernetes/v2` output); the user runs
`kubectl-teleport credentials --tbot-dir DIR --cache-dir CDIR` with both paths absolute, so kubectl's call is
answered by the hot path without looking anything up.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from .. import fmt, tbotdir
from ..errors import PluginError, UsageError
from ..outputs import kubeconfig
from . import tbot_credentials


def user_entry(tbot_dir: str, cache_dir: str) -> dict[str, Any]:
    """The exec user that reads the destination (v1, interactiveMode Never, absolute paths)."""
    hint = ("kubectl-teleport is not installed where this kubeconfig expects it: reinstall it with ./install.sh "
            f"and run `kubectl-teleport kubeconfig --tbot-dir {tbot_dir}` again")
    return kubeconfig.plugin_user(["credentials", "--tbot-dir", tbot_dir, "--cache-dir", cache_dir],
                                  install_hint=hint)


def standalone(contexts: list[tbotdir.KubeContext], names: list[str], user: dict[str, Any]) -> dict[str, Any]:
    """A whole kubeconfig for stdout; its current context is tbot's."""
    doc: dict[str, Any] = {"apiVersion": "v1", "kind": "Config", "preferences": {}, "clusters": [], "users": [],
                           "contexts": [], "current-context": names[0]}
    for ctx, name in zip(contexts, names, strict=True):
        context: dict[str, Any] = {"cluster": name, "user": name}
        if ctx.namespace:
            context["namespace"] = ctx.namespace
        doc["clusters"].append({"name": name, "cluster": kubeconfig.cluster_entry(ctx.server, [ctx.ca_pem],
                                                                                  ctx.tls_server_name)})
        doc["users"].append({"name": name, "user": user})
        doc["contexts"].append({"name": name, "context": context})
    return doc


def run(args: argparse.Namespace) -> int:
    tbot_dir, cache_dir = tbot_credentials.paths(args.tbot_dir, args.cache_dir)
    contexts = tbotdir.read_kubeconfig(tbot_dir)
    if args.context and len(contexts) > 1:
        raise UsageError(f"{tbot_dir}/kubeconfig.yaml has {len(contexts)} contexts; --context renames only one, "
                         "so leave it out to keep tbot's names")
    names = [args.context] if args.context else [c.name for c in contexts]
    tbot_credentials.ensure_cache_dir(cache_dir)
    user = user_entry(tbot_dir, cache_dir)
    lines: list[str] = []
    if args.kubeconfig or args.merge:
        target = Path(args.kubeconfig).expanduser().absolute() if args.kubeconfig else kubeconfig.default_path()
        current = False
        for ctx, name in zip(contexts, names, strict=True):
            cluster = kubeconfig.cluster_entry(ctx.server, [ctx.ca_pem], ctx.tls_server_name)
            current |= kubeconfig.merge(target, name, cluster, user, ctx.namespace)
        lines.append(f"Wrote context{'s' if len(names) > 1 else ''} {', '.join(names)} to {target}; kubectl runs "
                     f"`kubectl-teleport credentials --tbot-dir {tbot_dir}`")
        if not current:
            lines.append(f"Use it: kubectl --context {names[0]} get pods   (the current context was kept)")
        elif target != kubeconfig.default_path():
            lines.append(f"Use it: export KUBECONFIG={target}   (or: kubectl --kubeconfig {target} get pods)")
    else:
        print(yaml.safe_dump(standalone(contexts, names, user), default_flow_style=False, sort_keys=False), end="")
    try:
        entry = tbot_credentials.entry(tbot_dir, cache_dir)
        lines.append(f"tbot's certificate in {tbot_dir} is good until {fmt.rfc3339(entry.expires_at)}; tbot keeps "
                     "it renewed")
    except PluginError as err:
        fmt.warn(f"{err} (the kubeconfig is written; kubectl works once tbot writes valid credentials)")
    out = sys.stdout if args.kubeconfig or args.merge else sys.stderr  # stdout holds the kubeconfig itself
    for line in lines:
        print(line, file=out)
    return 0
