"""Property: whatever is done to a valid inventory, it loads or raises InventoryError."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bulkkm.errors import InventoryError
from bulkkm.inventory import Inventory, load_inventory
from tests.inventory.conftest import ENV, Certs

INVENTORIES = Path(__file__).resolve().parents[2] / "inventories"

Node = object
Step = str | int

BASE: dict[str, object] = {
    "version": 1,
    "allow_plaintext_secrets": False,
    "defaults": {
        "username": "admin",
        "password": "env:ONTAP_PASSWORD",
        "tls": {"verify": True, "ca_file": "ca.pem"},
        "limits": {"concurrency": 4, "rate": 20, "timeout": 30},
        "key_servers": [
            {
                "server": "kms1.example.com:5696",
                "secondary_key_servers": ["kms1-dr.example.com"],
                "password": "env:KMIP_PASSWORD",
            },
            "kms2.example.com",
        ],
        "retire_servers": ["kms-old.example.com", "[fd20::9]:5696"],
        "exclude_svms": ["*_test"],
        "window": {"days": ["sat", "sun"], "start": "01:00", "end": "05:00", "tz": "Europe/Paris"},
    },
    "groups": {
        "emea": {
            "limits": {"concurrency": 2},
            "svms": "all",
            "window": {"days": ["fri"], "start": "22:00", "end": "02:00", "tz": "UTC"},
            "wave": 2,
        }
    },
    "clusters": [
        {"name": "paris-01", "address": "10.1.2.3", "groups": ["emea"], "wave": 1},
        {
            "name": "lyon-02",
            "address": "[fd20::2]:8443",
            "svms": [
                "svm_finance",
                {"name": "svm_hr", "key_servers": ["kms3.example.com"], "retire_servers": []},
                "app_*",
            ],
            "cluster_scope": True,
            "window": None,
            "retire_servers": ["kms-old.example.com", "kms-old-2.example.com"],
        },
    ],
    "rollout": {
        "waves": [1, "10%", "100%"],
        "wave_order": "random:7",
        "max_fail_percent": 10,
        "max_failures": 3,
        "pause_between_waves": 30,
    },
}

values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=30)
    | st.sampled_from(["all", "env:", "file:", "env:NOPE", "file:ca.pem", "https://h", "[::1"])
    | st.sampled_from(["01:00", "24:00", "sat", "Sun", "Europe/Paris", "10%", "0%", "random:3"])
    | st.sampled_from(["kms1.example.com", "KMS-OLD.example.com:5696", "kms1-dr.example.com"]),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=12), children, max_size=3)
    ),
    max_leaves=6,
)
"""Replacement values: every YAML type, odd numbers, strings that look like references, and
near misses of times, days, zones, wave sizes and orders, and server names already used
(so that a server may end up both kept and retired)."""

host_like = st.text(
    alphabet=st.sampled_from("abcXYZ019.:-_[]/% \t@*"), max_size=24
) | st.from_regex(r"\A\[?[0-9a-f:]{0,20}\]?(:[0-9]{0,6})?\Z")
"""Strings for address and server fields: near misses of hosts, ports and IPv6 forms."""


def walk(node: Node, path: tuple[Step, ...] = ()) -> list[tuple[Step, ...]]:
    """The path of every value below ``node`` (not the root itself)."""
    found: list[tuple[Step, ...]] = []
    children: list[tuple[Step, Node]] = []
    if isinstance(node, dict):
        children = list(node.items())
    elif isinstance(node, list):
        children = list(enumerate(node))
    for step, child in children:
        found.append((*path, step))
        found.extend(walk(child, (*path, step)))
    return found


def parent_of(doc: Node, path: tuple[Step, ...]) -> dict[Step, Node] | list[Node]:
    """The container holding the value at ``path``."""
    node = doc
    for step in path[:-1]:
        node = node[step]  # type: ignore[index]
    assert isinstance(node, dict | list)
    return node


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, object]:
    """BASE with one to four random edits: delete, retype, add junk, garble a host."""
    doc = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        paths = walk(doc)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = parent_of(doc, path)
        step = path[-1]
        action = draw(st.sampled_from(["delete", "replace", "junk", "host", "duplicate"]))
        if action == "delete":
            del parent[step]  # type: ignore[arg-type]
        elif action == "replace":
            parent[step] = draw(values)  # type: ignore[index]
        elif action == "junk" and isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=15))] = draw(values)
        elif action == "host":
            parent[step] = draw(host_like)  # type: ignore[index]
        elif action == "duplicate" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[step]))  # type: ignore[index]
    return doc


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory, certs: Certs) -> Path:
    """A directory with the CA file the base inventory names."""
    directory = tmp_path_factory.mktemp("fuzz")
    (directory / "ca.pem").write_bytes(certs.ca.read_bytes())
    return directory


def check(path: Path) -> Inventory | InventoryError:
    """Load ``path``; anything but success or InventoryError fails the test (by raising)."""
    try:
        return load_inventory(path, environ=ENV)
    except InventoryError as exc:
        error = exc
    line_count = len(path.read_text(encoding="utf-8", errors="replace").splitlines())
    assert error.problems
    for problem in error.problems:
        assert problem.file == str(path)
        assert problem.line is None or 1 <= problem.line <= max(line_count, 1)
        assert not [v for v in ENV.values() if v and v in str(problem)]
    return error


def test_the_base_inventory_is_valid(fuzz_dir: Path) -> None:
    """The starting point of the property below loads (so mutations start from valid)."""
    path = fuzz_dir / "base.yaml"
    path.write_text(yaml.safe_dump(BASE, sort_keys=False), encoding="utf-8")
    assert isinstance(check(path), Inventory)


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(doc=mutated())
def test_any_mutation_validates_or_raises_inventory_error(
    fuzz_dir: Path, doc: dict[str, object]
) -> None:
    """Deleted keys, wrong types, junk keys, garbled hosts: never another exception."""
    path = fuzz_dir / "mutated.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    result = check(path)
    if isinstance(result, Inventory):  # then the resolved values are sane
        for cluster in result.clusters:
            assert cluster.limits.concurrency >= 1
            assert math.isfinite(cluster.limits.timeout)
            assert cluster.svms or cluster.cluster_scope
            assert cluster.wave is None or cluster.wave >= 1
            assert cluster.window is None or (
                cluster.window.days and cluster.window.start != cluster.window.end
            )
            managers = [(s.key_servers, s.retire_servers) for s in cluster.svms]
            if cluster.cluster_scope:
                managers.append((cluster.key_servers, cluster.retire_servers))
            for desired, retired in managers:  # a loaded file never keeps and retires one
                kept = {d.server for d in desired}
                kept.update(n for d in desired for n in d.secondary_key_servers)
                assert kept.isdisjoint(retired)
                assert len(set(retired)) == len(retired) <= 4


EXAMPLE_TEXTS = {
    p.name: p.read_text(encoding="utf-8") for p in sorted(INVENTORIES.glob("*.*")) if p.is_file()
}


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(sorted(EXAMPLE_TEXTS)),
    position=st.floats(min_value=0, max_value=1),
    cut=st.integers(min_value=0, max_value=8),
    insert=st.text(alphabet=st.sampled_from(" \n\t:-[]{}'\"#&*!|>,=%@`\\x0"), max_size=6),
)
def test_garbled_example_text_validates_or_raises_inventory_error(
    fuzz_dir: Path, name: str, position: float, cut: int, insert: str
) -> None:
    """Characters cut from and pasted into an example's YAML or TOML text: never a crash."""
    text = EXAMPLE_TEXTS[name]
    at = int(position * len(text))
    path = fuzz_dir / f"garbled{Path(name).suffix}"
    (fuzz_dir / "certs").mkdir(exist_ok=True)
    (fuzz_dir / "certs" / "fleet-ca.pem").write_bytes((fuzz_dir / "ca.pem").read_bytes())
    path.write_text(text[:at] + insert + text[at + cut :], encoding="utf-8")
    check(path)
