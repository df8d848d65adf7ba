"""Saved plans: what ``plan --out`` writes for a change board, and ``apply --plan`` executes.

A plan names the inventory it came from (with its sha256) and, per key manager, the servers
to add and the servers it had then (its fingerprint). It holds no secret: apply takes them
from the inventory, after checking it is the same file.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, Final

import orjson

from bulkkm.errors import UsageError
from bulkkm.events import ClusterDiscovered, ClusterResult, Event, RunFinished
from bulkkm.inventory import Inventory
from bulkkm.outputs import open_output
from bulkkm.plan import Action, ApprovedKeyManager, ApprovedPlan, Decision
from bulkkm.report import timestamp
from bulkkm.secret import redact

__all__ = ["PlanWriter", "PlannedCluster", "PlannedKeyManager", "SavedPlan", "read_plan"]

FORMAT: Final = "bulkkm-plan/1"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class PlannedKeyManager:
    """One key manager in a plan: what it had, what to add, what cannot be added."""

    uuid: str | None
    svm: str | None
    servers_present: tuple[str, ...]
    """Sorted: the fingerprint apply compares with the live state."""
    add: tuple[str, ...]
    blocked: tuple[tuple[str, str], ...] = ()
    """(server, why)."""
    remove: tuple[str, ...] = ()
    """Retired servers it still has: what ``migrate --plan`` removes (``apply`` never)."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class PlannedCluster:
    """One cluster in a plan."""

    name: str
    version: str
    window: str | None
    next_window: str | None
    key_managers: tuple[PlannedKeyManager, ...]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class SavedPlan:
    """A plan, as written and read back."""

    plan_id: str
    created_at: str
    inventory: Path
    inventory_sha256: str
    clusters: tuple[PlannedCluster, ...]
    not_discovered: tuple[str, ...] = ()

    @property
    def changed_clusters(self) -> tuple[str, ...]:
        """The clusters the plan adds servers to or removes servers from."""
        return tuple(
            c.name for c in self.clusters if any(km.add or km.remove for km in c.key_managers)
        )

    @property
    def additions(self) -> int:
        """How many servers the plan adds."""
        return sum(len(km.add) for c in self.clusters for km in c.key_managers)

    @property
    def removals(self) -> int:
        """How many servers the plan removes (with ``migrate --plan``)."""
        return sum(len(km.remove) for c in self.clusters for km in c.key_managers)

    def approved(self) -> ApprovedPlan:
        """What ``apply --plan`` executes."""
        return ApprovedPlan(
            plan_id=self.plan_id,
            clusters={
                c.name: {
                    km.uuid: ApprovedKeyManager(
                        svm=km.svm, fingerprint=km.servers_present, add=km.add, remove=km.remove
                    )
                    for km in c.key_managers
                    if (km.add or km.remove) and km.uuid is not None
                }
                for c in self.clusters
            },
        )

    def lines(self) -> list[str]:
        """The plan as a reviewer reads it (``plan --show``)."""
        lines = [
            f"plan {self.plan_id} made {self.created_at}",
            f"inventory {self.inventory} (sha256 {self.inventory_sha256[:12]})",
            f"{self.additions} additions and {self.removals} removals "
            f"on {len(self.changed_clusters)} clusters",
        ]
        if self.not_discovered:
            lines.append(
                f"INCOMPLETE: {len(self.not_discovered)} clusters not discovered, nothing "
                "planned for them (listed at the end)"
            )
        for c in self.clusters:
            window = f", window {c.window} (next {c.next_window})" if c.window else ""
            lines.append(f"{c.name} (ONTAP {c.version}){window}")
            for km in c.key_managers:
                where = f"svm {km.svm}" if km.svm is not None else "cluster scope"
                has = ", ".join(km.servers_present) or "no server"
                lines += [f"  + {where}: {server}   (has {has})" for server in km.add]
                lines += [f"  - {where}: {server}   (migrate only)" for server in km.remove]
                lines += [f"  ! {where}: {server} blocked: {why}" for server, why in km.blocked]
        if self.not_discovered:
            lines.append(f"not discovered, nothing planned ({len(self.not_discovered)}):")
            lines += [f"  {name}" for name in self.not_discovered]
        return lines


class PlanWriter:
    """A subscriber that collects a ``plan`` run's decisions and writes the plan file."""

    def __init__(self, file: BinaryIO, path: Path, inventory: Inventory, now: datetime) -> None:
        """Write to ``file`` (opened at ``path``) when the run finishes; windows as of ``now``."""
        self.file = file
        self.path = path
        self.written = False
        self.inventory = inventory
        self.now = now
        self.clusters: list[PlannedCluster] = []
        self.not_discovered: list[str] = []
        self.windows = {c.name: c.window for c in inventory.clusters}
        self.order = {c.name: at for at, c in enumerate(inventory.clusters)}

    @classmethod
    def create(
        cls,
        path: Path,
        inventory: Inventory,
        now: datetime,
        *,
        overwrite: bool = False,
        inputs: Iterable[Path] = (),
    ) -> PlanWriter:
        """A writer on a new plan file at ``path``, checked as ``open_output`` checks outputs."""
        file = open_output(path, what="--out", overwrite=overwrite, inputs=inputs)
        return cls(file, path, inventory, now)

    def __call__(self, event: Event) -> None:
        """Keep what the plan file needs; write it at the end."""
        match event:
            case ClusterDiscovered():
                self.clusters.append(self._cluster(event))
            case ClusterResult(reason=reason) if reason != "limit":
                # Failed, or never reached (an interrupt): nothing is planned for it, and
                # the reviewer must see that the plan does not cover it. ``--limit``'s
                # clusters are left out on purpose.
                self.not_discovered.append(event.cluster)
            case RunFinished():
                self._write()
            case _:
                pass

    def _cluster(self, event: ClusterDiscovered) -> PlannedCluster:
        """One cluster's entry: its key managers with something to add or blocked."""
        present = {km.uuid: tuple(sorted(km.servers)) for km in event.key_managers}
        groups: dict[tuple[str | None, str | None], list[Decision]] = {}
        for d in event.decisions:
            if d.action is not Action.PRESENT:
                groups.setdefault((d.key_manager_uuid, d.svm), []).append(d)
        window = self.windows.get(event.cluster)
        return PlannedCluster(
            name=event.cluster,
            version=event.version,
            window=None if window is None else str(window),
            next_window=None if window is None else timestamp(window.next_opening(self.now)),
            key_managers=tuple(
                PlannedKeyManager(
                    uuid=uuid_,
                    svm=svm,
                    servers_present=present.get(uuid_ or "", ()),
                    add=tuple(d.server for d in group if d.action is Action.ADD),
                    remove=tuple(d.server for d in group if d.action is Action.REMOVE),
                    blocked=tuple(
                        (d.server, d.detail or "") for d in group if d.action is Action.BLOCKED
                    ),
                )
                for (uuid_, svm), group in groups.items()
            ),
        )

    def _place(self, cluster: str) -> int:
        """Where ``cluster`` stands in the inventory (any other after every one of it)."""
        return self.order.get(cluster, len(self.order))

    def _write(self) -> None:
        """The plan file, in one write to the file opened (and locked) at the start."""
        plan = SavedPlan(
            plan_id=str(uuid.uuid4()),
            created_at=timestamp(datetime.now(UTC)),
            inventory=self.inventory.path.resolve(),
            inventory_sha256=self.inventory.sha256,
            # In the inventory's order, not the order discovery happened to finish in: the
            # same fleet gives the same plan to review.
            clusters=tuple(sorted(self.clusters, key=lambda c: self._place(c.name))),
            not_discovered=tuple(sorted(self.not_discovered, key=self._place)),
        )
        body = _masked(
            {"format": FORMAT, **dataclasses.asdict(plan), "inventory": str(plan.inventory)}
        )
        with self.file:
            self.file.write(orjson.dumps(body, option=orjson.OPT_INDENT_2) + b"\n")
        self.written = True


def _masked(value: object) -> object:
    """``value`` with every string in it redacted: key-manager ids, SVM and server names are
    a server's words, and ``plan --show`` runs in a process that knows no secret to mask."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: _masked(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_masked(item) for item in value]
    return value


def read_plan(path: Path) -> SavedPlan:
    """A plan file, checked; UsageError when it is not one."""
    try:
        body = orjson.loads(path.read_bytes())
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the plan: {exc.strerror}") from None
    except orjson.JSONDecodeError:
        raise UsageError(f"{path}: not a bulkkm plan (not JSON)") from None
    if not isinstance(body, dict) or body.get("format") != FORMAT:
        raise UsageError(f"{path}: not a bulkkm plan (format {FORMAT!r} expected)")
    try:
        return SavedPlan(
            plan_id=str(body["plan_id"]),
            created_at=str(body["created_at"]),
            inventory=Path(str(body["inventory"])),
            inventory_sha256=str(body["inventory_sha256"]),
            clusters=tuple(_planned_cluster(c) for c in body["clusters"]),
            not_discovered=tuple(map(str, body.get("not_discovered", ()))),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"{path}: a malformed bulkkm plan ({exc!r})") from None


def _planned_cluster(raw: dict[str, object]) -> PlannedCluster:
    """A cluster entry read back (a plan may hold thousands: empty lists are not iterated)."""
    kms = raw["key_managers"]
    if not isinstance(kms, list):
        raise TypeError("key_managers is not a list")
    return PlannedCluster(
        name=str(raw["name"]),
        version=str(raw["version"]),
        window=None if raw.get("window") is None else str(raw["window"]),
        next_window=None if raw.get("next_window") is None else str(raw["next_window"]),
        key_managers=tuple(
            [
                PlannedKeyManager(
                    uuid=None if km["uuid"] is None else str(km["uuid"]),
                    svm=None if km["svm"] is None else str(km["svm"]),
                    servers_present=tuple(sorted(map(str, km["servers_present"]))),
                    add=tuple(map(str, km["add"])),
                    remove=tuple(map(str, km["remove"])) if km.get("remove") else (),
                    blocked=(
                        tuple([(str(s), str(why)) for s, why in km["blocked"]])
                        if km.get("blocked")
                        else ()
                    ),
                )
                for km in kms
            ]
        ),
    )
