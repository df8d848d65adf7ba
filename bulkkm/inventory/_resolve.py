"""Stacking the layers into resolved clusters, and the checks only a whole cluster allows.

Order: defaults, then the cluster's groups in the order it lists them, then the cluster,
then (for ``key_servers`` and ``retire_servers`` only) an SVM entry. A window is one value:
the highest layer that writes ``window:`` gives the whole of it (null: none). Stacks of
defaults and groups are built once per distinct list of groups; key-server lists, TLS
settings, limits and secrets are resolved once each and shared by every cluster that uses
them.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TypeVar

from bulkkm.inventory._format import KeyPath, render_path
from bulkkm.inventory._issues import Issues, some_names
from bulkkm.inventory._layers import (
    At,
    ClusterSpec,
    Document,
    Field,
    Invalid,
    LimitsLayer,
    RetireList,
    ServerList,
    Settings,
    SvmSpec,
    TlsLayer,
)
from bulkkm.inventory._model import Cluster, DesiredServer, Limits, SelectorKind, SvmSelector, Tls
from bulkkm.inventory._secrets import SecretResolver
from bulkkm.inventory._tls import TlsFiles

__all__ = ["resolve"]

T = TypeVar("T")

_DEFAULT_LIMITS = Limits()
_WHERE = "on the cluster, in one of its groups or in defaults"


def resolve(
    doc: Document, *, base_dir: Path, environ: Mapping[str, str], issues: Issues
) -> tuple[tuple[Cluster, ...], tuple[str, ...]]:
    """The resolved clusters and the warnings; problems go to ``issues``."""
    return _Resolver(doc, base_dir=base_dir, environ=environ, issues=issues).run()


def _value(field: Field[T]) -> T | None:
    """A field's value, or None when it is unset or invalid."""
    return field.value if isinstance(field, At) else None


class _Resolver:
    """One resolution of one document, with its caches."""

    def __init__(
        self, doc: Document, *, base_dir: Path, environ: Mapping[str, str], issues: Issues
    ) -> None:
        """Prepare the caches."""
        self._doc = doc
        self._base_dir = base_dir
        self._issues = issues
        self._secrets = SecretResolver(environ, base_dir)
        self._files = TlsFiles()
        self._stacks: dict[tuple[str, ...], Settings] = {}
        self._servers: dict[KeyPath, tuple[DesiredServer, ...]] = {}
        self._retired: dict[KeyPath, tuple[str, ...]] = {}
        self._crossed: set[tuple[KeyPath, KeyPath]] = set()
        self._tls: dict[TlsLayer, Tls | None] = {}
        self._limits: dict[LimitsLayer, Limits] = {}
        # Most clusters inherit the very same layer object as the cluster before them: an
        # identity check first spares hashing the layer's fields (and their paths) each time.
        self._last_tls: tuple[TlsLayer, Tls | None] | None = None
        self._last_limits: tuple[LimitsLayer, Limits] | None = None
        self._selectors_built: dict[tuple[object, ...], SvmSelector] = {}
        self._unverified: list[str] = []
        self._warnings: list[str] = []

    def run(self) -> tuple[tuple[Cluster, ...], tuple[str, ...]]:
        """Every cluster, then the problems and warnings gathered on the way."""
        clusters = [self._cluster(spec) for spec in self._doc.clusters]
        self._secrets.report(self._issues)
        if self._unverified:
            self._warnings.insert(
                0,
                f"tls.verify is false for {some_names('cluster', self._unverified)}: "
                "their HTTPS certificates are not checked",
            )
        if self._doc.literal_secrets:
            where = ", ".join(render_path(p) for p in self._doc.literal_secrets[:3])
            more = len(self._doc.literal_secrets) - 3
            self._warnings.insert(
                0,
                "allow_plaintext_secrets is true and passwords are written in the file "
                f"({where}{f' and {more} more' if more > 0 else ''})",
            )
        return tuple(c for c in clusters if c is not None), tuple(self._warnings)

    def _stack(self, groups: tuple[str, ...]) -> Settings:
        """Defaults with the groups on top, in order; built once per list of groups."""
        stack = self._stacks.get(groups)
        if stack is None:
            stack = self._doc.defaults
            for group in groups:
                stack = self._doc.groups[group].over(stack)
            self._stacks[groups] = stack
        return stack

    def _where(self, spec: ClusterSpec, path: KeyPath, message: str) -> None:
        """Report at ``path`` when the cluster wrote it, else at the cluster, naming ``path``."""
        if path[: len(spec.path)] == spec.path:
            self._issues.add(path, message)
        else:
            self._issues.add(spec.path, f"{message} (inherited from {render_path(path)})")

    def _cluster(self, spec: ClusterSpec) -> Cluster | None:
        """Resolve one cluster; None when it cannot be built (its problems are recorded)."""
        settings = spec.settings.over(self._stack(spec.groups))
        label = spec.name or render_path(spec.path)
        tls = self._tls_for(settings.tls)
        limits = self._limits_for(settings.limits)
        password = None
        if isinstance(settings.password, At):
            password = self._secrets.resolve(settings.password.value, settings.password.path, label)
        if settings.tls.client_cert is None:
            for key, field in (("username", settings.username), ("password", settings.password)):
                if field is None:
                    self._issues.add(
                        (*spec.path, key),
                        f"no {key}: set {key} {_WHERE} (or use tls.client_cert)",
                    )
        selectors = self._selectors(spec, settings, label)
        scope = _value(settings.cluster_scope) is True
        # The cluster's own list is resolved (its KMIP passwords looked up) only when some
        # key manager uses it: the cluster scope, or an svms entry without a list of its own.
        used = scope or (
            isinstance(settings.svms, At)
            and any(entry.key_servers is None for entry in settings.svms.value.entries)
        )
        own = self._desired(settings.key_servers, label) if used else ()
        # Only a selected cluster scope gets a retire list: an engine that ignored
        # cluster_scope could then never remove a server from a key manager nobody selected.
        own_retired = self._retire(settings.retire_servers) if scope else ()
        if scope and isinstance(settings.cluster_scope, At):
            self._check_servers(spec, settings.key_servers, settings.cluster_scope.path, None)
            self._check_retired(settings.key_servers, settings.retire_servers)
        self._check_selects(spec, settings)
        exclude_svms = _value(settings.exclude_svms) or ()
        self._warn_excluded(spec, label, selectors, exclude_svms)
        if tls is not None and not tls.verify:
            self._unverified.append(label)
        if spec.name is None or spec.address is None or tls is None or selectors is None:
            return None
        return Cluster(
            name=spec.name,
            host=spec.address[0],
            port=spec.address[1],
            username=_value(settings.username),
            password=password,
            tls=tls,
            limits=limits,
            groups=spec.groups,
            svms=selectors,
            exclude_svms=exclude_svms,
            cluster_scope=scope,
            key_servers=own or (),
            retire_servers=own_retired,
            # Built once per window written (the parser's cache), shared by its clusters.
            window=_value(settings.window),
            wave=_value(settings.wave),
            region=_value(settings.region),
        )

    def _check_selects(self, spec: ClusterSpec, settings: Settings) -> None:
        """A cluster must select at least one key manager."""
        svms, scope = settings.svms, settings.cluster_scope
        if isinstance(svms, Invalid) or isinstance(scope, Invalid) or _value(scope) is True:
            return
        if svms is None:
            self._issues.add(
                spec.path,
                "the cluster selects no key manager: add 'svms:' (all, names or globs) "
                "or 'cluster_scope: true'",
            )
        elif svms.value.complete and not svms.value.entries:
            self._where(spec, svms.path, "svms is empty, so the cluster selects no key manager")

    def _check_servers(
        self, spec: ClusterSpec, servers: Field[ServerList], at: KeyPath, entry: SvmSpec | None
    ) -> None:
        """A selected key manager (an ``svms`` entry, or the cluster scope) needs key servers."""
        if (isinstance(servers, At) and servers.value.entries) or isinstance(servers, Invalid):
            return
        what = "the cluster scope" if entry is None else _entry_name(entry)
        if servers is None:
            self._where(spec, at, f"{what} has no key servers: set key_servers {_WHERE}")
        elif isinstance(servers, At) and not servers.value.entries:
            self._where(spec, servers.path, f"key_servers is empty, so {what} has nothing to add")

    def _selectors(
        self, spec: ClusterSpec, settings: Settings, label: str
    ) -> tuple[SvmSelector, ...] | None:
        """The ``svms`` entries, each with its key servers; None if any cannot be resolved."""
        if not isinstance(settings.svms, At):
            return () if settings.svms is None else None
        selectors: list[SvmSelector] = []
        resolved = True
        for entry in settings.svms.value.entries:
            servers = settings.key_servers if entry.key_servers is None else entry.key_servers
            retired = (
                settings.retire_servers if entry.retire_servers is None else entry.retire_servers
            )
            self._check_servers(spec, servers, entry.path, entry)
            self._check_retired(servers, retired)
            desired = self._desired(servers, label)
            if desired is None or not desired:
                resolved = False
                continue
            selectors.append(self._selector(entry, desired, self._retire(retired)))
        return tuple(selectors) if resolved and settings.svms.value.complete else None

    def _selector(
        self, entry: SvmSpec, desired: tuple[DesiredServer, ...], retired: tuple[str, ...]
    ) -> SvmSelector:
        """One ``svms`` entry resolved: a frozen value shared by every cluster that writes it
        alike (``svms: all`` on 10,000 clusters is one selector, not 10,000)."""
        # The lists are the resolver's shared tuples (one per list written): kept alive by
        # its caches, so that their ids identify them for the whole load.
        key = (entry.kind, entry.pattern, id(desired), id(retired))
        selector = self._selectors_built.get(key)
        if selector is None:
            selector = self._selectors_built[key] = SvmSelector(
                kind=entry.kind, pattern=entry.pattern, key_servers=desired, retire_servers=retired
            )
        return selector

    def _check_retired(self, servers: Field[ServerList], retired: Field[RetireList]) -> None:
        """One key manager's lists, as inherited: no server may be both desired and retired.

        Reported at the ``retire_servers`` entry, naming the ``key_servers`` entry it collides
        with; a secondary counts as desired (retiring it would remove a server the key
        manager is meant to keep using). Each pair of lists is checked once, so lists in
        defaults or a group give one problem, not one per cluster.
        """
        if not isinstance(servers, At) or not isinstance(retired, At):
            return
        pair = (servers.path, retired.path)
        if pair in self._crossed:
            return
        self._crossed.add(pair)
        desired: dict[str, tuple[KeyPath, str | None]] = {}
        for entry in servers.value.entries:
            desired.setdefault(entry.server, (entry.path, None))
            for index, secondary in enumerate(entry.secondaries):
                where = (*entry.path, "secondary_key_servers", index)
                desired.setdefault(secondary, (where, entry.server))
        for name in retired.value.entries:
            if name.value not in desired:
                continue
            where, primary = desired[name.value]
            if primary is None:
                message = (
                    f"{name.value} is both retired and desired: key_servers lists it at "
                    f"{render_path(where)}; a key manager cannot keep and remove one server"
                )
            else:
                message = (
                    f"{name.value} is retired but key_servers keeps it as a secondary of "
                    f"{primary} at {render_path(where)}; a key manager cannot keep and remove "
                    "one server"
                )
            self._issues.add(name.path, message)

    def _retire(self, field: Field[RetireList]) -> tuple[str, ...]:
        """The names to retire (none when unset or invalid), one shared tuple per list."""
        if not isinstance(field, At):
            return ()
        names = self._retired.get(field.path)
        if names is None:
            names = self._retired[field.path] = field.value.names
        return names

    def _desired(self, field: Field[ServerList], label: str) -> tuple[DesiredServer, ...] | None:
        """A key-server list with its KMIP passwords resolved; None if it is unusable."""
        if not isinstance(field, At):
            return () if field is None else None
        cached = self._servers.get(field.path)
        if cached is not None:
            return cached
        servers: list[DesiredServer] = []
        resolved = True
        for entry in field.value.entries:
            password = None
            if isinstance(entry.password, At):
                password = self._secrets.resolve(entry.password.value, entry.password.path, label)
                resolved = resolved and password is not None
            servers.append(
                DesiredServer(
                    server=entry.server,
                    secondary_key_servers=entry.secondaries,
                    password=password,
                )
            )
        if not resolved:  # not cached: each cluster needing it is named in the problem
            return None
        desired = self._servers[field.path] = tuple(servers)
        return desired

    def _tls_for(self, layer: TlsLayer) -> Tls | None:
        """The resolved TLS settings, files checked; None if they cannot be used."""
        if self._last_tls is not None and self._last_tls[0] is layer:
            return self._last_tls[1]
        if layer in self._tls:
            self._last_tls = (layer, self._tls[layer])
            return self._tls[layer]
        fields = (layer.verify, layer.ca_file, layer.client_cert, layer.client_key)
        usable = not any(isinstance(f, Invalid) for f in fields)
        ca_file = cert = key = None
        if isinstance(layer.ca_file, At):
            ca_file = self._path(layer.ca_file.value)
            problem = self._files.ca_problem(layer.ca_file.value, ca_file)
            if problem:
                self._issues.add(layer.ca_file.path, problem)
                usable = False
        if isinstance(layer.client_key, At) and layer.client_cert is None:
            self._issues.add(layer.client_key.path, "client_key without client_cert")
            usable = False
        if isinstance(layer.client_cert, At):
            cert = self._path(layer.client_cert.value)
            written_key = None
            if isinstance(layer.client_key, At):
                key = self._path(layer.client_key.value)
                written_key = (layer.client_key.value, key)
            cert_problem, key_problem = self._files.chain_problems(
                (layer.client_cert.value, cert), written_key
            )
            if cert_problem:
                self._issues.add(layer.client_cert.path, cert_problem)
            if key_problem and isinstance(layer.client_key, At):
                self._issues.add(layer.client_key.path, key_problem)
            usable = usable and not cert_problem and not key_problem
        verify = _value(layer.verify)
        tls = None
        if usable:
            tls = Tls(
                verify=verify is not False,
                ca_file=ca_file,
                client_cert=cert,
                client_key=key,
            )
        self._tls[layer] = tls
        self._last_tls = (layer, tls)
        return tls

    def _limits_for(self, layer: LimitsLayer) -> Limits:
        """The resolved limits (defaults where unset or invalid)."""
        if self._last_limits is not None and self._last_limits[0] is layer:
            return self._last_limits[1]
        limits = self._limits.get(layer)
        if limits is None:
            concurrency, timeout = _value(layer.concurrency), _value(layer.timeout)
            limits = Limits(
                concurrency=_DEFAULT_LIMITS.concurrency if concurrency is None else concurrency,
                rate=_value(layer.rate),
                timeout=_DEFAULT_LIMITS.timeout if timeout is None else timeout,
            )
            self._limits[layer] = limits
        self._last_limits = (layer, limits)
        return limits

    def _path(self, written: str) -> Path:
        """A file path as written, made absolute against the inventory's directory."""
        return self._base_dir / os.path.expanduser(written)

    def _warn_excluded(
        self,
        spec: ClusterSpec,
        label: str,
        selectors: tuple[SvmSelector, ...] | None,
        excludes: tuple[str, ...],
    ) -> None:
        """Warn when an SVM named explicitly is also excluded (the exclusion wins)."""
        if not excludes:
            return
        for selector in selectors or ():
            if selector.kind is not SelectorKind.NAME:
                continue
            for pattern in excludes:
                if fnmatch.fnmatchcase(selector.pattern, pattern):
                    self._warnings.append(
                        f"{render_path(spec.path)} ({label}): SVM {selector.pattern!r} is "
                        f"listed but also matches exclude_svms {pattern!r}, so it is skipped"
                    )
                    break


def _entry_name(entry: SvmSpec) -> str:
    """How an ``svms`` entry reads in a message."""
    if entry.kind is SelectorKind.ALL:
        return "svms: all"
    if entry.kind is SelectorKind.GLOB:
        return f"the SVM glob {entry.pattern!r}"
    return f"SVM {entry.pattern!r}"
