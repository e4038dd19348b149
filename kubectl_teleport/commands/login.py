"""`kubectl-teleport login`: join a Teleport cluster with a bot's one-time token, store the identity, issue the
first Kubernetes certificates and write the kubeconfig.

The network steps are `issuer.teleport.join_bot`'s: `/webapi/find` (the proxy's web certificate verified against
the system trust store, or not at all with --insecure), the host CA from `GetClusterCACert` over the auth route
checked against --ca-pin *before* the token leaves (tbot itself ignores pins on proxy joins; see
docs/protocol.md), a key of the cluster's signature algorithm suite, `/webapi/host/credentials`.

Everything local is checked before the token is spent: the flags, the kubeconfig (parsed, and its directory
written to), and room in the data dir for the identity and every certificate (reserved, then filled).

Without --role, the roles to impersonate are the bot role's `allow.impersonate.roles`, read with `GetRole` as
tbot does. That needs the bot identity, so it can only happen after the join: when the bot role allows no role or
`GetRole` fails, the identity stays stored (the data dir is logged in, with no roles recorded) and the error says
how to finish without a new token: `login --role NAME`, or the same login again once an admin has given the bot
roles.
"""

from __future__ import annotations

import argparse
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from .. import clock, fmt, pki, policy
from ..config import Config, KubeCluster, KubeconfigEntry
from ..errors import AccessDenied, AnotherWriter, IdentityRejected, NotLoggedIn, PluginError, UsageError
from ..issuer import auth, http, renewal, teleport
from ..outputs import kubeconfig
from ..store import identity
from ..store.datadir import CONFIG, ENV_DATA_DIR, DataDir, check_cluster_name, resolve
from ..store.files import Reservation

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..store.identity_secret import IdentitySecret

ENV_TOKEN = "KUBECTL_TELEPORT_TOKEN"  # noqa: S105 (the variable's name, not a token)
LOCK_WAIT = 60.0


@dataclass
class LoginRequest:
    """What the user asked for (validated by `validate`)."""

    proxy: str | None
    token: str | None
    ca_pins: list[str]
    kube_clusters: list[str]
    roles: list[str] = field(default_factory=list)
    auth_server: str | None = None
    insecure: bool = False
    data_dir: str | None = None
    kubeconfig: str | None = None
    merge: bool = False
    context: str | None = None
    ttl: str | None = None
    timeout: float = http.DEFAULT_DEADLINE
    destination: str | None = None
    static: bool = False
    store_identity: str | None = None
    secret_labels: list[str] = field(default_factory=list)


def check_address(flag: str, address: str) -> str:
    """HOST:PORT, nothing else (no scheme, no path)."""
    try:
        auth.split_host_port(address)
    except ValueError:
        raise UsageError(f"bad {flag} {address[:80]!r}: give HOST:PORT, e.g. teleport.example.com:443") from None
    if "/" in address:
        raise UsageError(f"bad {flag} {address[:80]!r}: give HOST:PORT, e.g. teleport.example.com:443")
    return address


def check_proxy(proxy: str) -> str:
    return check_address("--proxy", proxy)


def _insecure_warning(pins: list[str]) -> str:
    if pins:
        return ("--insecure: the proxy's web certificate is not verified; the CA pin still checks the auth service, "
                "but the token itself travels on the unverified web connection: use this only in a lab")
    return ("--insecure without --ca-pin: nothing authenticates the cluster, so the token and the identity could "
            "go to anyone on the path: use this only in a lab")


def _join(req: LoginRequest, proxy: str, pins: list[str], ttl: int,
          deadline: http.Deadline) -> tuple[Config, teleport.Joined]:
    assert req.token is not None
    joined = teleport.join_bot(proxy, req.token, pins=pins, auth_server=req.auth_server, insecure=req.insecure,
                               ttl_seconds=ttl, deadline=deadline)
    found = joined.discovery
    server, tls_name = teleport.kube_endpoint(proxy, found)
    bot = pki.identity_of(pki.load_cert(joined.certs.tls))
    cfg = Config(proxy=proxy, cluster_name=found.cluster_name,
                 bot=bot.bot_name or bot.username.removeprefix("bot-"), ca_pems=joined.host_ca_pems,
                 kube_server=server, kube_tls_server_name=tls_name, ttl_seconds=ttl,
                 auth_server=req.auth_server or "", tls_routing=found.tls_routing,
                 server_version=found.server_version, suite=found.suite, roles=list(req.roles),
                 tls_ca_pems=joined.certs.tls_ca_certs, ssh_ca_certs=joined.certs.ssh_ca_certs)
    return cfg, joined


def _replace_identity(dd: DataDir, cfg: Config, joined: teleport.Joined, room: Reservation) -> None:
    """Swap in a new identity cleanly: an old renewal record and cached certificates go."""
    if dd.has_config():
        try:
            old_cfg = dd.load_config()
            cfg.kubeconfigs, cfg.destinations = old_cfg.kubeconfigs, old_cfg.destinations
            cfg.identity_secret = cfg.identity_secret or old_cfg.identity_secret
            cfg.secret_labels = cfg.secret_labels or old_cfg.secret_labels
        except PluginError:
            pass
    identity.clear_pending(dd)
    dd.remove_entries()
    identity.save(dd, joined.certs.tls, joined.key_pem, room, ssh_cert=joined.certs.ssh)
    dd.save_config(cfg)


def _kubeconfig_target(req: LoginRequest, dd: DataDir) -> tuple[Path, bool]:
    if req.merge and req.kubeconfig:
        raise UsageError("--merge and --kubeconfig exclude each other: choose one")
    if req.merge:
        return kubeconfig.default_path(), False
    if req.kubeconfig:
        return Path(req.kubeconfig).expanduser().absolute(), False
    return dd.kubeconfig_path, True


def validate(req: LoginRequest) -> tuple[list[str], int]:
    """Check flags before any network traffic; returns the normalised pins and the TTL in seconds."""
    if not req.kube_clusters:
        raise UsageError("give at least one --kube-cluster NAME (the Kubernetes cluster's name in Teleport)")
    for name in req.kube_clusters:
        check_cluster_name(name)
    if req.context and len(req.kube_clusters) > 1:
        raise UsageError("--context names one context: use it with a single --kube-cluster")
    try:
        pins = [pki.normalize_pin(p) for p in req.ca_pins]
        ttl = fmt.parse_duration(req.ttl) if req.ttl else 3600
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    for role in req.roles:
        if not role or len(role) > 255 or any(c.isspace() or c == "," for c in role):
            raise UsageError(f"bad --role {role[:80]!r}: give one role name per --role")
    if req.token and not req.proxy:
        raise UsageError("--proxy HOST:PORT is required with --token")
    if req.proxy:
        check_proxy(req.proxy)
    if req.auth_server:
        check_address("--auth-server", req.auth_server)
    if (req.auth_server or req.insecure or pins) and not req.token:
        raise UsageError("--ca-pin, --auth-server and --insecure apply to a join: give them with --token")
    if req.static and not req.destination:
        raise UsageError("--static applies to --destination DIR: give both")
    if not policy.MIN_TTL <= ttl <= policy.MAX_TTL:
        raise UsageError("--ttl must be between 1m and 24h: shorter certificates would be renewed on almost every "
                         "kubectl call")
    return pins, ttl


def _secret_flags(req: LoginRequest) -> tuple[str | None, dict[str, str] | None]:
    """--store-identity's canonical URL and --secret-label's labels (UsageError, exit 2, when malformed)."""
    if not req.store_identity and not req.secret_labels:
        return None, None
    from ..store import identity_secret

    url = identity_secret.check_url(req.store_identity) if req.store_identity else None
    labels = identity_secret.parse_labels(req.secret_labels) if req.secret_labels else None
    return url, labels


def _data_dir(req: LoginRequest, url: str | None) -> DataDir:
    """--data-dir, else per proxy: --proxy, else the proxy recorded in the identity Secret."""
    if url and not req.proxy and not (req.data_dir or os.environ.get(ENV_DATA_DIR)):
        from ..store import identity_secret

        return resolve(None, identity_secret.proxy_of(url))
    return resolve(req.data_dir, req.proxy)


def _recorded_secret(dd: DataDir) -> str | None:
    """The identity Secret a previous login recorded in the data dir, if any."""
    try:
        return (dd.load_config().identity_secret or None) if dd.has_config() else None
    except PluginError:
        return None


def login(req: LoginRequest) -> list[str]:
    """Run a login; returns the lines to print."""
    req.token = req.token or os.environ.get(ENV_TOKEN) or None
    pins, ttl = validate(req)
    url, labels = _secret_flags(req)
    dd = _data_dir(req, url)
    fresh_dir = not dd.exists()
    if not fresh_dir:
        dd.check()
        url = url or _recorded_secret(dd)
    target, standalone = _kubeconfig_target(req, dd)
    if not standalone:
        kubeconfig.preflight(target)  # the standalone one lives in the data dir, whose room is reserved below
    if not req.token and not dd.has_config() and not url:
        raise NotLoggedIn(f"no identity in {dd.root} yet: log in with --proxy and --token first")
    if req.insecure:
        fmt.warn(_insecure_warning(pins))
    deadline = http.Deadline(req.timeout)
    out: list[str] = []
    lock = dd.acquire(LOCK_WAIT)
    rooms: list[Reservation] = []
    store = None
    try:
        dd.remove_stale_temps()
        if url:  # the Secret is the identity's committed store: read it first (store/identity_secret.py)
            from ..store import identity_secret

            given = [req.destination] if req.destination else []
            identity_secret.check_apart(url, [*identity_secret.recorded_destinations(dd), *given])
            store = identity_secret.IdentitySecret(dd, url, timeout=min(req.timeout, 10.0))
            synced = store.sync(clock.now(), token=bool(req.token))
            if synced == identity_secret.RESUMED:
                out.append(f"Resumed the bot identity from Secret {url}.")
            elif synced == identity_secret.CREATED:
                out.append(f"Stored the bot identity of {dd.root} in Secret {url}.")
            if synced in (identity_secret.RESUMED, identity_secret.CURRENT, identity_secret.CREATED):
                if req.token:
                    out.append(f"The join token was not used: Secret {url} holds a valid identity.")
                    req.token = None
        if not req.token and not dd.has_config():
            raise NotLoggedIn(f"no identity in {dd.root} yet: log in with --proxy and --token first")
        # room for everything this login writes, before the token is spent or anything is issued
        entry_rooms = [dd.reserve_entry(name) for name in req.kube_clusters]
        rooms += entry_rooms
        config_room = dd.reserve(CONFIG)
        rooms.append(config_room)
        if req.token:
            assert req.proxy is not None
            id_room = identity.reserve(dd)
            rooms.append(id_room)
            if req.destination:  # a Secret destination must be writable before the token is spent
                from ..outputs.destination import preflight

                preflight(req.destination, labels)
            if store is not None:  # ... and so must the identity Secret
                store.preflight(labels or {})
            cfg, joined = _join(req, req.proxy, pins, ttl, deadline)
            cfg.identity_secret = url or ""
            cfg.secret_labels = labels or {}
            config_room.discard()
            _replace_identity(dd, cfg, joined, id_room)
            if store is not None:
                _store_new_identity(store, dd)
                out.append(f"Stored the bot identity in Secret {url}.")
        else:
            cfg = dd.load_config()
            if req.proxy and req.proxy != cfg.proxy:
                raise UsageError(f"{dd.root} belongs to {cfg.proxy}, not {req.proxy}: log in with a token to "
                                 "switch, or choose another --data-dir")
            if req.ttl:
                cfg.ttl_seconds = ttl
            if req.roles:
                cfg.roles = list(req.roles)
            if url:
                cfg.identity_secret = url
            if labels is not None:
                cfg.secret_labels = labels
        notes: list[str] = []
        ident = renewal.current_identity(dd, cfg, clock.now(), deadline, notes=notes, store=store)
        instance = f", bot instance {ident.bot_instance_id}" if ident.bot_instance_id else ""
        suite = cfg.suite or "none (RSA keys)"
        out.append(f"Logged in to {cfg.cluster_name} at {cfg.proxy} (Teleport {cfg.server_version or 'unknown'}, "
                   f"signature algorithm suite {suite}) as bot {cfg.bot!r} (identity generation "
                   f"{ident.generation}{instance}, valid until {fmt.rfc3339(ident.not_after)}).")
        out += [f"Warning: {n}" for n in notes]
        if not cfg.roles:  # no --role, none recorded: the bot role's default roles (tbot's fetchDefaultRoles)
            cfg.roles = _default_roles(req, dd, cfg, ident.username, deadline)
            out.append(f"Roles to impersonate: {', '.join(cfg.roles)} (what the bot's role {ident.username} allows; "
                       "--role chooses others).")
        for name, room in zip(req.kube_clusters, entry_rooms, strict=True):
            entry, info = renewal.issue_kube_cert(dd, cfg, name, deadline, room)
            context = req.context or f"{cfg.cluster_name}-{name}"
            kube_ca, server, tls_name = cfg.ca_pems, cfg.kube_server, cfg.kube_tls_server_name
            users = info["kubernetes_users"]
            cfg.kube_clusters[name] = KubeCluster(kube_user=users[0] if len(users) == 1 else None,
                                                  server=server, tls_server_name=tls_name, ca_pems=kube_ca)
            kubeconfig.merge(target, context, kubeconfig.cluster_entry(server, kube_ca, tls_name),
                             kubeconfig.exec_user(dd.root, name))
            record = KubeconfigEntry(str(target), context, name, standalone)
            cfg.kubeconfigs = [k for k in cfg.kubeconfigs if (k.path, k.name) != (record.path, record.name)]
            cfg.kubeconfigs.append(record)
            groups = ", ".join(info["kubernetes_groups"]) or "none"
            out.append(f"Kubernetes cluster {name}: context {context}, roles {', '.join(cfg.roles)} (Kubernetes "
                       f"users: {', '.join(users) or 'none'}; groups: {groups}), certificate valid until "
                       f"{fmt.rfc3339(entry.not_after)}.")
        config_room.discard()
        dd.save_config(cfg)
        if req.destination:
            from ..outputs.destination import write_destination

            out.extend(write_destination(dd, cfg, req.destination, static=req.static,
                                         default=req.kube_clusters[0]))
        if cfg.destinations:
            from ..outputs.destination import refresh

            out.extend(f"Updated the credential files in {path}" for path in refresh(dd, cfg))
        if store is not None:
            store.push()  # config.json as this login left it (clusters, kubeconfigs, destinations, labels)
    except BaseException:
        if fresh_dir and not dd.has_config():
            _remove_fresh_dir(dd, rooms)  # a failed first login leaves nothing behind
        raise
    finally:
        for room in rooms:
            room.discard()
        lock.release()
    out.append(f"Wrote kubeconfig {target}")
    if standalone or target != kubeconfig.default_path():
        out.append(f"Use it: export KUBECONFIG={target}   (or: kubectl --kubeconfig {target} get pods)")
    return out


def _default_roles(req: LoginRequest, dd: DataDir, cfg: Config, bot_role: str, deadline: http.Deadline) -> list[str]:
    """The bot role's `allow.impersonate.roles` (GetRole with the bot identity). A refusal, an unreachable server
    or an empty list fails with the way on: the identity is stored, so no new token is needed."""
    again = ["kubectl-teleport login"]
    again += [f"--data-dir {shlex.quote(req.data_dir)}"] if req.data_dir else [f"--proxy {cfg.proxy}"]
    again += [f"--kube-cluster {name}" for name in req.kube_clusters]
    fix = (f"the bot identity is kept in {dd.root} (logged in, no roles recorded): run `{' '.join(again)} --role "
           f"NAME` (no token needed), or ask an admin to let the bot impersonate roles (`tctl bots update {cfg.bot} "
           "--add-roles ROLE`) and run it again without --role")
    try:
        roles = teleport.default_roles(renewal.auth_target(dd, cfg), bot_role, deadline)
    except IdentityRejected:
        raise  # a locked or refused identity: the fix is an admin's, not a role
    except PluginError as err:
        raise type(err)(f"cannot find the roles to impersonate: {err}; {fix}", err.code) from None
    if not roles:
        raise AccessDenied(f"cannot find the roles to impersonate: the bot's role {bot_role} allows none "
                           f"(allow.impersonate.roles is empty); {fix}")
    return roles


def _store_new_identity(store: IdentitySecret, dd: DataDir) -> None:
    """After a join: the new identity into the Secret; a failure says how to finish without a new token."""
    try:
        store.create()
    except PluginError as err:
        if isinstance(err, AnotherWriter):
            raise
        raise type(err)(f"{err}; the new identity is kept in {dd.root}: run this login again without --token to "
                        f"store it in Secret {store.url}", err.code) from None


def _remove_fresh_dir(dd: DataDir, rooms: list[Reservation]) -> None:
    """Undo the directory a failed first login made (it holds nothing but reservations and the lock)."""
    for room in rooms:
        room.discard()
    for path in (dd.kube_dir, dd.lock_path, dd.root):
        try:
            os.rmdir(path) if path != dd.lock_path else os.unlink(path)
        except OSError:
            pass


def run(args: argparse.Namespace) -> int:
    """`kubectl-teleport login`."""
    for line in login(LoginRequest(
            proxy=args.proxy, token=args.token, ca_pins=args.ca_pin, kube_clusters=args.kube_cluster,
            roles=args.role, auth_server=args.auth_server, insecure=args.insecure, data_dir=args.data_dir,
            kubeconfig=args.kubeconfig, merge=args.merge, context=args.context, ttl=args.ttl, timeout=args.timeout,
            destination=args.destination, static=args.static, store_identity=args.store_identity,
            secret_labels=args.secret_label)):
        print(line)
    return 0
