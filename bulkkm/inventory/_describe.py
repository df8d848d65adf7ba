"""What ``bulkkm validate`` prints: each cluster as resolved, the rollout, then the totals."""

from __future__ import annotations

from bulkkm.inventory._model import (
    Cluster,
    DesiredServer,
    Inventory,
    Limits,
    Rollout,
    SelectorKind,
)
from bulkkm.rollout import Window

__all__ = ["describe"]


def describe(inventory: Inventory) -> tuple[str, ...]:
    """Lines describing every cluster (address, limits, key managers, servers), then totals."""
    lines: list[str] = []
    for cluster in inventory.clusters:
        lines.extend(_cluster_lines(cluster))
    if inventory.rollout != Rollout():
        lines.append(_rollout(inventory.rollout))
    lines.append(_totals(inventory))
    retiring = _retire_totals(inventory)
    if retiring is not None:
        lines.append(retiring)
    lines.extend(f"warning: {warning}" for warning in inventory.warnings)
    return tuple(lines)


def _number(value: float) -> str:
    """``30.0`` -> ``30``, ``2.5`` -> ``2.5``."""
    return f"{value:g}"


def _limits(limits: Limits) -> str:
    """``concurrency 4, rate 20/s, timeout 30s``."""
    rate = "no rate limit" if limits.rate is None else f"rate {_number(limits.rate)}/s"
    return f"concurrency {limits.concurrency}, {rate}, timeout {_number(limits.timeout)}s"


def _window(window: Window) -> str:
    """``window sat,sun 01:00-05:00 Europe/Paris`` (``, overnight`` when it ends next day)."""
    overnight = ", overnight" if window.end < window.start else ""
    return f"window {window}{overnight}"


def _rollout(rollout: Rollout) -> str:
    """The ``rollout:`` settings the file sets, on one line."""
    parts = []
    if rollout.waves is not None:
        parts.append(f"waves {', '.join(str(size) for size in rollout.waves)}")
    if rollout.wave_order is not None:
        parts.append(f"order {rollout.wave_order}")
    if rollout.max_failures is not None:
        parts.append(f"max failures {rollout.max_failures}")
    if rollout.max_fail_percent is not None:
        parts.append(f"max fail {_number(rollout.max_fail_percent)}%")
    if rollout.pause_between_waves is not None:
        parts.append(f"pause {_number(rollout.pause_between_waves)}s between waves")
    return f"rollout (command-line options override): {'; '.join(parts)}"


def _servers(servers: tuple[DesiredServer, ...], retire: tuple[str, ...] = ()) -> str:
    """``a:5696 (secondary b:5696), c:5696``, then ``; retire d:5696`` when any."""
    parts = []
    for server in servers:
        text = server.server
        if server.secondary_key_servers:
            text += f" (secondary {', '.join(server.secondary_key_servers)})"
        parts.append(text)
    retiring = f"; retire {', '.join(retire)}" if retire else ""
    return ", ".join(parts) + retiring


def _cluster_lines(cluster: Cluster) -> list[str]:
    """One header line and one line per key manager selected."""
    details = [_limits(cluster.limits)]
    if cluster.groups:
        details.insert(0, f"groups {', '.join(cluster.groups)}")
    if not cluster.tls.verify:
        details.append("TLS NOT VERIFIED")
    if cluster.window is not None:
        details.append(_window(cluster.window))
    if cluster.wave is not None:
        details.append(f"pinned to wave {cluster.wave}")
    if cluster.region is not None:
        details.append(f"region {cluster.region}")
    lines = [f"{cluster.name} at {cluster.address} ({'; '.join(details)})"]
    for selector in cluster.svms:
        if selector.kind is SelectorKind.ALL:
            what = "all SVMs (*)"
        elif selector.kind is SelectorKind.GLOB:
            what = f"SVMs matching {selector.pattern}"
        else:
            what = f"SVM {selector.pattern}"
        lines.append(f"  {what}: {_servers(selector.key_servers, selector.retire_servers)}")
    if cluster.exclude_svms:
        lines.append(f"  excluding SVMs matching {', '.join(cluster.exclude_svms)}")
    if cluster.cluster_scope:
        lines.append(f"  cluster scope: {_servers(cluster.key_servers, cluster.retire_servers)}")
    return lines


def _totals(inventory: Inventory) -> str:
    """Counts of clusters, key managers by kind, distinct servers and known targets."""
    kinds = dict.fromkeys(SelectorKind, 0)
    scopes = known_targets = 0
    servers: set[str] = set()
    for cluster in inventory.clusters:
        for selector in cluster.svms:
            kinds[selector.kind] += 1
            servers.update(s.server for s in selector.key_servers)
            if selector.kind is SelectorKind.NAME:
                known_targets += len(selector.key_servers)
        if cluster.cluster_scope:
            scopes += 1
            known_targets += len(cluster.key_servers)
            servers.update(s.server for s in cluster.key_servers)
    return (
        f"{_count(len(inventory.clusters), 'cluster')}; key managers: "
        f"{_count(kinds[SelectorKind.NAME], 'named SVM')}, "
        f"{_count(kinds[SelectorKind.GLOB], 'SVM glob')}, "
        f"{_count(kinds[SelectorKind.ALL], 'all-SVMs selection')}, "
        f"{_count(scopes, 'cluster scope')}; "
        f"{_count(len(servers), 'distinct key server')}; "
        f"{_count(known_targets, 'target')} known before discovery "
        "(globs and all-SVMs selections expand when the clusters are read)"
    )


def _retire_totals(inventory: Inventory) -> str | None:
    """What ``migrate`` would remove, counted like the totals; None when nothing is retired."""
    servers: set[str] = set()
    key_managers = known = 0
    for cluster in inventory.clusters:
        for selector in cluster.svms:
            if selector.retire_servers:
                key_managers += 1
                servers.update(selector.retire_servers)
                if selector.kind is SelectorKind.NAME:
                    known += len(selector.retire_servers)
        if cluster.cluster_scope and cluster.retire_servers:
            key_managers += 1
            servers.update(cluster.retire_servers)
            known += len(cluster.retire_servers)
    if not servers:
        return None
    return (
        "to retire (migrate only; apply never removes): "
        f"{_count(len(servers), 'distinct key server')} on {key_managers} of those key managers; "
        f"{_count(known, 'removal')} known before discovery"
    )


def _count(number: int, noun: str) -> str:
    """``1 cluster``, ``2 clusters``."""
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"
