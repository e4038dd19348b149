"""`kubectl-teleport systemd-unit`: a hardened systemd service running `kubectl-teleport start` (like tbot's)."""

from __future__ import annotations

import argparse
import os
import pwd
from pathlib import Path

from ..errors import PluginError
from ..outputs import kubeconfig
from ..store.datadir import DataDir

SERVICE_NAME = "kubectl-teleport"


def quote(arg: str) -> str:
    """One word of an ExecStart= line (systemd's quoting; `%` and `$` escaped so nothing is expanded)."""
    arg = arg.replace("%", "%%").replace("$", "$$")
    if arg and not any(c in arg for c in " \t\"'\\;"):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def path_setting(path: str) -> str:
    """A path in ReadWritePaths= (space-separated list: quote when needed; `%` escaped)."""
    path = path.replace("%", "%%")
    return f'"{path}"' if any(c in path for c in " \t\"") else path


def default_user(root: Path) -> str:
    """The owner of the data dir when it exists, else the user running this command."""
    try:
        uid = root.stat().st_uid
    except OSError:
        uid = os.geteuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def destinations(dd: DataDir) -> list[str]:
    """The recorded --destination directories (they must be writable too); none when unreadable."""
    try:
        return [d.path for d in dd.load_config().destinations if d.path]
    except (PluginError, OSError):
        return []


def unit_text(data_dir: str, user: str | None = None) -> str:
    """The unit file text for the identity in `data_dir`, run as `user` (default: the data dir's owner)."""
    dd = DataDir(data_dir)
    root = str(dd.root)
    user = user or default_user(dd.root)
    command = " ".join(quote(a) for a in (kubeconfig.plugin_command(), "start", "--data-dir", root))
    writable = " ".join(path_setting(p) for p in [root, *destinations(dd)])
    return f"""\
# {SERVICE_NAME}: keeps the bot identity in {root} and its Kubernetes certificates renewed.
# Install: save as /etc/systemd/system/{SERVICE_NAME}.service, then
#   systemctl daemon-reload && systemctl enable --now {SERVICE_NAME}
# Renew now: systemctl reload {SERVICE_NAME}   Logs: journalctl -u {SERVICE_NAME}
[Unit]
Description=kubectl-teleport Machine ID renewal for {root.replace("%", "%%")}
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
User={user}
ExecStart={command}
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
RestartSec=5
TimeoutStopSec=90
UMask=0077
# Hardening: the daemon only needs the network, its data dir and its destinations.
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=read-only
ReadWritePaths={writable}
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictSUIDSGID=yes
RestrictRealtime=yes
RestrictNamespaces=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
LockPersonality=yes
MemoryDenyWriteExecute=yes
SystemCallArchitectures=native
CapabilityBoundingSet=
AmbientCapabilities=

[Install]
WantedBy=multi-user.target
"""


def run(args: argparse.Namespace) -> int:
    """`kubectl-teleport systemd-unit`."""
    print(unit_text(args.data_dir, args.user))
    return 0
