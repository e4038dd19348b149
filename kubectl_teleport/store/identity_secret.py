"""The bot's renewable identity kept in a Kubernetes Secret (`--store-identity kubernetes-secret://NS/NAME`), so a
pod that restarts with an empty data dir resumes without a new join token (docs/design.md, "Kubernetes Secret
destination and `--store-identity`").

The Secret is the committed store; the data dir is a cache of it that this module fills and reads back. Keys: the
data dir's `config.json`, `identity.pem` and, while a renewal is unfinished, `identity.pending.json` (always with
`sent: true` there: the Secret cannot know when the request left, so a pod resuming from it takes the safe reading
and holds the renewal, as the data dir's record of a sent request). Annotations name the bot and the identity's
generation, nothing secret. The data dir's `identity.secret.json` remembers the Secret's uid and resourceVersion as
this dir last read or wrote it, and a digest of what it held then (so an unchanged data dir writes nothing).

**One writer.** Every write is conditional: an apply carrying the resourceVersion this dir last read or wrote, or a
create that fails when the Secret exists. Of two processes that read one version, only the first write lands; the
other gets 409 and raises `AnotherWriter` (exit 9). A renewal writes its pending key into the Secret before
anything is sent to Teleport (`push` after `identity.save_pending`, renewal.py), so the loser stops before
Teleport sees a second renewal from that generation. A 409 whose Secret holds exactly what we sent is our own
write whose answer was lost, not a conflict. Callers hold the identity's lock. The Kubernetes client is
outputs/kube_secret.py; nothing here logs or puts Secret data in a message.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace

from .. import fmt
from ..config import Config
from ..errors import AnotherWriter, IdentityRejected, NotLoggedIn, PluginError, UsageError
from ..outputs import kube_secret as ks
from . import identity
from .datadir import CONFIG, IDENTITY, PENDING, SECRET_STATE, DataDir
from .identity import BotIdentity

KEYS = (CONFIG, IDENTITY, PENDING)
BOT_ANNOTATION = "kubectl-teleport.dev/bot"
GENERATION_ANNOTATION = "kubectl-teleport.dev/generation"

# what `sync` found and did
CURRENT = "current"  # the data dir already holds the Secret's version: nothing written
RESUMED = "resumed"  # the Secret's identity was written into the data dir (no token needed)
CREATED = "created"  # no Secret: created from the data dir's identity
JOIN = "join"  # no usable identity anywhere: a join with the token follows, then `create`
REPLACE = "replace"  # the Secret holds an expired or damaged identity and a token was given: join, then `create`
# how the Secret stands against the data dir (`standing`; CURRENT as above)
GONE, UNREAD, OTHER_WRITER, BEHIND = "gone", "unread", "other-writer", "behind"


@dataclass(frozen=True)
class Synced:
    """The Secret as this data dir last read or wrote it."""

    url: str
    uid: str
    resource_version: str
    digest: str

    def to_json(self) -> bytes:
        return json.dumps({"url": self.url, "uid": self.uid, "resource_version": self.resource_version,
                           "digest": self.digest}).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Synced | None:
        try:
            obj = json.loads(raw)
            return cls(str(obj["url"]), str(obj["uid"]), str(obj["resource_version"]), str(obj["digest"]))
        except (ValueError, KeyError, TypeError):
            return None


def digest(files: Mapping[str, bytes], labels: Mapping[str, str], annotations: Mapping[str, str]) -> str:
    """What a write sends, as one hash: equal digests need no write."""
    h = hashlib.sha256()
    h.update(json.dumps([sorted(labels.items()), sorted(annotations.items())]).encode())
    for key in sorted(files):
        h.update(f"\0{key}\0{len(files[key])}\0".encode() + files[key])
    return h.hexdigest()


def check_url(url: str) -> str:
    """The canonical `kubernetes-secret://NAMESPACE/NAME` (the namespace of $POD_NAMESPACE written out)."""
    return str(ks.parse_url(url))


def check_apart(url: str, destinations: list[str]) -> None:
    """The identity Secret may not also be a destination: a destination's apply would drop the identity's keys."""
    for dest in destinations:
        if ks.is_secret_url(dest) and str(ks.parse_url(dest)) == url:
            raise UsageError(f"{url} is both the identity Secret and a destination: the identity must stay apart from "
                             "what applications read; name another Secret for one of them")


def recorded_destinations(dd: DataDir) -> list[str]:
    """The destinations the data dir's config.json records ([] when it has none or cannot be read)."""
    try:
        return [d.path for d in dd.load_config().destinations] if dd.has_config() else []
    except PluginError:
        return []


def parse_labels(items: list[str]) -> dict[str, str]:
    """`--secret-label KEY=VALUE` (repeatable), checked as Kubernetes checks labels (UsageError otherwise)."""
    labels: dict[str, str] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise UsageError(f"bad --secret-label {item[:80]!r}: give KEY=VALUE, e.g. app.kubernetes.io/part-of=ci")
        if key in labels and labels[key] != value:
            raise UsageError(f"--secret-label {key!r} is given twice with different values: give it once")
        labels[key] = value
    return ks.check_labels(labels)


def proxy_of(url: str) -> str | None:
    """The proxy recorded in the identity Secret's config.json (to find the data dir when none is named)."""
    info = ks.read_secret(ks.parse_url(url), access=ks.load_access())
    if info is None or CONFIG not in info.data:
        return None
    try:
        return Config.from_json(info.data[CONFIG]).proxy or None
    except ValueError:
        return None


class IdentitySecret:
    """The identity Secret of one data dir: sync it into the dir, write the dir's state back, delete it."""

    def __init__(self, dd: DataDir, url: str, *, access: ks.ClusterAccess | None = None,
                 timeout: float = ks.DEFAULT_TIMEOUT) -> None:
        self.dd = dd
        self.ref = ks.parse_url(url)
        self.url = str(self.ref)
        self._access = access
        self.timeout = timeout
        self.found: ks.SecretInfo | None = None  # what `sync` read

    @property
    def access(self) -> ks.ClusterAccess:
        if self._access is None:
            self._access = ks.load_access()
        return self._access

    # state ----------------------------------------------------------------------------------------------------

    def state(self) -> Synced | None:
        """This dir's record of the Secret (None when it has none, or one of another Secret)."""
        raw = self.dd.read(SECRET_STATE) if self.dd.exists() else None
        synced = Synced.from_json(raw) if raw is not None else None
        return synced if synced is not None and synced.url == self.url else None

    def _remember(self, info: ks.SecretInfo, sent_digest: str) -> None:
        self.dd.write(SECRET_STATE, Synced(self.url, info.uid, info.resource_version, sent_digest).to_json())

    def _content(self) -> tuple[dict[str, bytes], dict[str, str], dict[str, str]]:
        """The data dir's committed state as the Secret's keys, labels and annotations."""
        config_raw, ident_raw = self.dd.read(CONFIG), self.dd.read(IDENTITY)
        if config_raw is None or ident_raw is None:
            raise NotLoggedIn(f"no identity in {self.dd.root} to keep in Secret {self.url}: log in with --token")
        cfg = self.dd.load_config()
        ident = identity.decode(ident_raw, where=str(self.dd.identity_path))
        files = {CONFIG: config_raw, IDENTITY: ident_raw}
        pending = identity.load_pending(self.dd)
        if pending is not None:
            files[PENDING] = identity.encode_pending(replace(pending, sent=True))
        return files, dict(cfg.secret_labels), annotations(cfg.bot or ident.bot, ident.generation)

    # reading --------------------------------------------------------------------------------------------------

    def read(self) -> ks.SecretInfo | None:
        return ks.read_secret(self.ref, access=self.access, timeout=self.timeout)

    def parse(self, info: ks.SecretInfo) -> tuple[Config, BotIdentity]:
        """The config and identity the Secret holds; NotLoggedIn when it holds none, or a damaged one."""
        config_raw, ident_raw = info.data.get(CONFIG), info.data.get(IDENTITY)
        fix = f"log in again with a new join token (`login --token ... --store-identity {self.url}` replaces it)"
        if config_raw is None or ident_raw is None:
            raise NotLoggedIn(f"Secret {self.url} holds no bot identity (no config.json and identity.pem): {fix}")
        try:
            cfg = Config.from_json(config_raw)
        except ValueError:
            raise NotLoggedIn(f"the config.json in Secret {self.url} is damaged: {fix}") from None
        return cfg, identity.decode(ident_raw, where=f"Secret {self.url}")

    def sync(self, now: float, *, token: bool) -> str:
        """Under the lock, before anything else: bring the data dir in line with the Secret (module docstring).

        Present: its identity is written into the data dir (RESUMED, or CURRENT when the dir already holds that
        version) and a token is not needed; expired, it is IdentityRejected unless a token will replace it.
        Absent: created from the data dir's identity (CREATED), or JOIN when a token will make one."""
        info = self.read()
        self.found = info
        state = self.state()
        fix = f"log in again with a new join token (`login --token ... --store-identity {self.url}` replaces it)"
        if info is None:
            if token:
                return JOIN
            if state is not None:
                raise NotLoggedIn(f"Secret {self.url} no longer exists (deleted by a logout or an admin since this "
                                  f"data dir wrote it): {fix}")
            if not (self.dd.has_config() and self.dd.identity_path.exists()):
                raise NotLoggedIn(f"no bot identity in Secret {self.url} nor in {self.dd.root}: log in with "
                                  f"--proxy, --token, --role and --store-identity {self.url} first")
            identity.check_usable(identity.load(self.dd), now)
            self.create()
            return CREATED
        try:
            cfg, ident = self.parse(info)
        except NotLoggedIn:
            if token:
                return REPLACE
            raise
        if now >= ident.expires_at:
            if token:
                return REPLACE
            raise IdentityRejected(f"the bot identity in Secret {self.url} expired at "
                                   f"{fmt.rfc3339(ident.expires_at)}: {fix}")
        if (state is not None and state.resource_version == info.resource_version and self.dd.has_config()
                and self.dd.identity_path.exists()):
            return CURRENT
        self._materialise(info, cfg, ident)
        return RESUMED

    def _materialise(self, info: ks.SecretInfo, cfg: Config, ident: BotIdentity) -> None:
        """Write the Secret's keys into the data dir (atomic, 0600) and remember its version."""
        dd = self.dd
        try:
            old = identity.load(dd) if dd.identity_path.exists() else None
        except PluginError:
            old = None
        if old is not None and old.bot_instance_id != ident.bot_instance_id:
            dd.remove_entries()  # certificates of another bot instance
        config_raw = info.data[CONFIG]
        if cfg.identity_secret != self.url:
            cfg.identity_secret = self.url
            config_raw = cfg.to_json()
        dd.write(CONFIG, config_raw)
        dd.write(IDENTITY, info.data[IDENTITY])
        if PENDING in info.data:
            dd.write(PENDING, info.data[PENDING])
            pending = identity.load_pending(dd)  # (a damaged record is dropped)
            if pending is not None and not pending.sent:  # the Secret's record is read the safe way: sent
                identity.save_pending(dd, replace(pending, sent=True))
        else:
            identity.clear_pending(dd)
        files, labels, notes = self._content()
        self._remember(info, digest(files, labels, notes))

    # writing --------------------------------------------------------------------------------------------------

    def preflight(self, labels: Mapping[str, str]) -> None:
        """Before a login spends its token: the Secret must be writable here (a server-side dry run)."""
        ks.write_files(self.ref, dict.fromkeys(KEYS[:2], b""), access=self.access, labels=labels, force=True,
                       dry_run=True, timeout=self.timeout)

    def create(self) -> None:
        """Store the data dir's identity in a new Secret (or, after REPLACE, over the expired one it held)."""
        files, labels, notes = self._content()
        if self.found is None:
            try:  # without the labels: a create's fields belong to an `Update` entry, which an apply cannot remove
                info = ks.create_secret(self.ref, files, access=self.access, annotations=notes, timeout=self.timeout)
            except ks.SecretConflict:
                raise AnotherWriter(f"Secret {self.url} was created by another process while this one joined: only "
                                    f"one process may keep a bot's identity; this one's stays in {self.dd.root} only"
                                    ) from None
            self._remember(info, digest(files, {}, notes))
            if not labels:
                return
        else:
            info = self.found
        self._remember(self._write(files, labels, notes, info.resource_version), digest(files, labels, notes))

    def push(self) -> bool:
        """Write the data dir's state to the Secret when it differs from what was last written (conditional on
        the remembered resourceVersion); True when written. AnotherWriter when another process wrote since."""
        state = self.state()
        if state is None:
            raise NotLoggedIn(f"{self.dd.root} has not read Secret {self.url} yet: run `kubectl-teleport start "
                              f"--store-identity {self.url}` (or login with it)")
        files, labels, notes = self._content()
        sent = digest(files, labels, notes)
        if sent == state.digest:
            return False
        self._remember(self._write(files, labels, notes, state.resource_version), sent)
        return True

    def _write(self, files: dict[str, bytes], labels: dict[str, str], notes: dict[str, str],
               version: str) -> ks.SecretInfo:
        """One apply conditional on `version` (forced: the keys are ours alone, and the version guards them)."""
        try:
            info = ks.write_files(self.ref, files, access=self.access, labels=labels, annotations=notes,
                                  resource_version=version, force=True, timeout=self.timeout)
        except ks.SecretConflict:
            current = self.read()
            if current is not None and {k: v for k, v in current.data.items() if k in KEYS} == files:
                return current  # our own write, whose answer was lost
            raise AnotherWriter(f"the bot identity in Secret {self.url} was written by another process since this "
                                f"one read it (resourceVersion {version}): only one process may renew a bot, so "
                                "this one stops before asking Teleport; run one replica (strategy Recreate), and "
                                "restart this one to resume from the Secret") from None
        if info.created:  # deleted since: the apply made a new Secret (an apply's resourceVersion is then ignored)
            try:
                ks.delete_secret(self.ref, access=self.access, resource_version=info.resource_version,
                                 timeout=self.timeout)
            except PluginError:
                pass
            raise AnotherWriter(f"Secret {self.url} was deleted since this process read it (a logout elsewhere?), so "
                                "this one stops renewing: log in again with a new join token to keep the bot")
        return info

    def standing(self) -> tuple[str, ks.SecretInfo | None]:
        """How the Secret stands against this data dir, read only (`doctor`): GONE, UNREAD (this dir never read
        it), OTHER_WRITER (written by another process since this dir read or wrote it), BEHIND (this dir holds a
        state not written to it yet) or CURRENT; with the Secret as read."""
        info = self.read()
        state = self.state()
        if info is None:
            return GONE, None
        if state is None:
            return UNREAD, info
        if (state.uid, state.resource_version) != (info.uid, info.resource_version):
            return OTHER_WRITER, info
        return (CURRENT if digest(*self._content()) == state.digest else BEHIND), info

    def delete(self) -> str:
        """Logout: delete the Secret only if nobody wrote it since this dir did; the line to print."""
        state = self.state()
        if state is None:
            return (f"Warning: {self.dd.root} never read Secret {self.url}; it was left in place (delete it "
                    "yourself if the bot is retired)")
        try:
            gone = ks.delete_secret(self.ref, access=self.access, resource_version=state.resource_version,
                                    timeout=self.timeout)
        except ks.SecretConflict:
            return (f"Warning: Secret {self.url} was written by another process since this one read it; it was left "
                    "in place (that process keeps the bot; delete it yourself if the bot is retired)")
        except PluginError as err:
            return f"Warning: {err}; delete Secret {self.url} yourself"
        return f"Deleted the identity Secret {self.url}" if gone else f"The identity Secret {self.url} was already gone"


def annotations(bot: str, generation: int) -> dict[str, str]:
    """The operator's view of the Secret: which bot, which generation (no secret)."""
    return {BOT_ANNOTATION: bot, GENERATION_ANNOTATION: str(generation)}
