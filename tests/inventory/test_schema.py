"""The JSON Schema: the same keys as the parser, closed objects, described keys."""

from __future__ import annotations

import dataclasses
import json
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest
import yaml

from bulkkm.inventory import inventory_schema
from bulkkm.inventory._format import (
    CLUSTER_KEYS,
    GROUP_KEYS,
    LIMITS_KEYS,
    ROLLOUT_KEYS,
    SERVER_KEYS,
    SETTINGS_KEYS,
    SVM_KEYS,
    TLS_KEYS,
    TOP_KEYS,
    WINDOW_KEYS,
)
from bulkkm.inventory._layers import Settings
from bulkkm.inventory._parse import _SETTINGS_READERS

INVENTORIES = Path(__file__).resolve().parents[2] / "inventories"
EXAMPLES = sorted(p for p in INVENTORIES.iterdir() if p.suffix in {".yaml", ".yml", ".toml"})

Json = dict[str, object]


def at(schema: Json, *keys: str | int) -> Json:
    """The sub-schema reached by following ``keys``."""
    node: object = schema
    for key in keys:
        node = cast(list[object], node)[key] if isinstance(key, int) else cast(Json, node)[key]
    return cast(Json, node)


def objects(node: object) -> Iterator[Json]:
    """Every sub-schema that is a mapping, depth first."""
    if isinstance(node, dict):
        yield cast(Json, node)
        for value in node.values():
            yield from objects(value)
    elif isinstance(node, list):
        for value in node:
            yield from objects(value)


@pytest.mark.parametrize(
    ("where", "keys"),
    [
        pytest.param((), TOP_KEYS, id="top"),
        pytest.param(("$defs", "settings"), SETTINGS_KEYS, id="defaults"),
        pytest.param(("$defs", "group"), GROUP_KEYS, id="group"),
        pytest.param(("$defs", "cluster"), CLUSTER_KEYS, id="cluster"),
        pytest.param(("$defs", "tls"), TLS_KEYS, id="tls"),
        pytest.param(("$defs", "limits"), LIMITS_KEYS, id="limits"),
        pytest.param(("$defs", "keyServer", "anyOf", 1), SERVER_KEYS, id="key-server"),
        pytest.param(("$defs", "svmEntry", "anyOf", 1), SVM_KEYS, id="svm-entry"),
        pytest.param(("$defs", "window"), WINDOW_KEYS, id="window"),
        pytest.param(("$defs", "rollout"), ROLLOUT_KEYS, id="rollout"),
    ],
)
def test_schema_has_exactly_the_keys_the_parser_accepts(
    where: tuple[str | int, ...], keys: tuple[str, ...]
) -> None:
    """Each mapping of the format lists in the schema the very keys the parser takes."""
    node = at(inventory_schema(), *where)
    assert sorted(cast(Json, node["properties"])) == sorted(keys)
    assert node["additionalProperties"] is False


def test_the_parser_reads_every_inheritable_key_into_its_setting() -> None:
    """Each key a group may set has its reader, in the order of ``Settings``' fields."""
    assert sorted(_SETTINGS_READERS) == sorted(GROUP_KEYS)
    assert list(_SETTINGS_READERS) == [field.name for field in dataclasses.fields(Settings)]


def test_every_object_is_closed_and_every_key_described() -> None:
    """additionalProperties is false (or a schema, for group names); keys have descriptions."""
    schema = inventory_schema()
    for node in objects(schema):
        if node.get("type") == "object":
            assert node.get("additionalProperties") is False or node is at(
                schema, "properties", "groups"
            ), node
        for name, sub in cast(Json, node.get("properties", {})).items():
            assert isinstance(sub, dict)
            assert sub.get("description"), name


def test_groups_are_settings_like_defaults_plus_a_wave() -> None:
    """Every group has the keys of defaults, described alike, and ``wave`` besides."""
    schema = inventory_schema()
    assert at(schema, "properties", "groups", "additionalProperties") == {"$ref": "#/$defs/group"}
    assert at(schema, "properties", "defaults")["$ref"] == "#/$defs/settings"
    group = dict(at(schema, "$defs", "group", "properties"))
    assert group.pop("wave") == at(schema, "$defs", "cluster", "properties", "wave")
    assert group == at(schema, "$defs", "settings", "properties")


def test_the_window_description_says_it_is_replaced_whole() -> None:
    """Editors tell the user that a window is not merged key by key, and what null does."""
    window = at(inventory_schema(), "$defs", "settings", "properties", "window")
    description = str(window["description"])
    assert "replaces the inherited one whole" in description
    assert "not merged key by key" in description
    assert "null removes" in description


def test_schema_is_draft_2020_12_json_and_fresh_each_call() -> None:
    """It declares its draft, serialises to JSON, and callers may change their copy."""
    schema = inventory_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert json.loads(json.dumps(schema)) == schema
    at(schema, "$defs", "tls")["properties"] = {}
    assert at(inventory_schema(), "$defs", "tls")["properties"] != {}


def read(path: Path) -> object:
    """An example file's data, as an editor's schema validation would see it."""
    if path.suffix == ".toml":
        return tomllib.loads(path.read_text(encoding="utf-8"))
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_validates_against_the_schema(path: Path) -> None:
    """The example inventories are valid by the schema (needs the optional jsonschema)."""
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(inventory_schema())
    assert [e.message for e in validator.iter_errors(read(path))] == []


CLUSTERS = [{"name": "c", "address": "h", "svms": "all"}]
"""A valid list of clusters, so that a document is refused for its one fault only."""


@pytest.mark.parametrize(
    "document",
    [
        pytest.param({"version": 2, "clusters": [{"name": "c", "address": "h"}]}, id="version"),
        pytest.param({"version": 1, "clusters": [{"name": "c", "adress": "h"}]}, id="unknown"),
        pytest.param(
            {"version": 1, "clusters": [{"name": "c", "address": "https://h"}]}, id="scheme"
        ),
        pytest.param(
            {"version": 1, "defaults": {"limits": {"rate": 0}}, "clusters": CLUSTERS},
            id="rate-zero",
        ),
        pytest.param(
            {"version": 1, "clusters": [{"name": "c", "address": "h", "svms": ["all"]}]},
            id="all-in-list",
        ),
        pytest.param(
            {"version": 1, "defaults": {"wave": 1}, "clusters": CLUSTERS},
            id="wave-in-defaults",
        ),
        pytest.param(
            {"version": 1, "defaults": {"window": {"days": ["sat"]}}, "clusters": CLUSTERS},
            id="window-incomplete",
        ),
        pytest.param(
            {
                "version": 1,
                "defaults": {
                    "window": {"days": ["sat"], "start": 630, "end": "12:00", "tz": "UTC"}
                },
                "clusters": CLUSTERS,
            },
            id="window-time-read-as-minutes",
        ),
        pytest.param(
            {
                "version": 1,
                "defaults": {
                    "window": {"days": ["sat", "saturday"], "start": "1", "end": "2", "tz": "UTC"}
                },
                "clusters": CLUSTERS,
            },
            id="window-bad-day-and-times",
        ),
        pytest.param(
            {"version": 1, "clusters": [{"name": "c", "address": "h", "wave": 0}]},
            id="wave-zero",
        ),
        pytest.param(
            {"version": 1, "rollout": {"wave": [1]}, "clusters": CLUSTERS}, id="rollout-key"
        ),
        pytest.param(
            {"version": 1, "rollout": {"wave_order": "random"}, "clusters": CLUSTERS},
            id="rollout-order",
        ),
        pytest.param(
            {"version": 1, "rollout": {"max_fail_percent": 101}, "clusters": CLUSTERS},
            id="rollout-percent",
        ),
        pytest.param(
            {
                "version": 1,
                "defaults": {"retire_servers": ["o1", "o2", "o3", "o4", "o5"]},
                "clusters": CLUSTERS,
            },
            id="retire-more-than-4",
        ),
        pytest.param(
            {"version": 1, "defaults": {"retire_servers": ["o1", "o1"]}, "clusters": CLUSTERS},
            id="retire-twice",
        ),
        pytest.param(
            {"version": 1, "groups": {"g": {"retire_servers": "o1"}}, "clusters": CLUSTERS},
            id="retire-not-a-list",
        ),
        pytest.param(
            {
                "version": 1,
                "clusters": [{**CLUSTERS[0], "retire_servers": [{"server": "o1"}]}],
            },
            id="retire-long-form",
        ),
        pytest.param(
            {
                "version": 1,
                "clusters": [
                    {**CLUSTERS[0], "svms": [{"name": "svm_a", "retire_servers": ["kmip://o1"]}]}
                ],
            },
            id="retire-scheme-in-an-svm-entry",
        ),
    ],
)
def test_schema_rejects_what_the_parser_rejects(document: Json) -> None:
    """A few shapes the parser refuses are refused by the schema too (needs jsonschema)."""
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(inventory_schema())
    assert list(validator.iter_errors(document))


def test_schema_accepts_every_new_rollout_key_written_well() -> None:
    """The control for the cases above: windows, waves and a rollout block, all valid."""
    jsonschema = pytest.importorskip("jsonschema")
    window = {"days": ["Sat", "sun"], "start": "22:00", "end": "2:00", "tz": "Europe/Paris"}
    document = {
        "version": 1,
        "defaults": {"window": window},
        "groups": {"prod": {"window": None, "wave": 2}},
        "clusters": [{**CLUSTERS[0], "window": window, "wave": 1, "groups": ["prod"]}],
        "rollout": {
            "waves": [1, "10%", "100%"],
            "wave_order": "random:7",
            "max_fail_percent": 12.5,
            "max_failures": 0,
            "pause_between_waves": 30,
        },
    }
    validator = jsonschema.Draft202012Validator(inventory_schema())
    assert [e.message for e in validator.iter_errors(document)] == []


def test_schema_takes_retire_servers_wherever_it_takes_key_servers() -> None:
    """defaults, a group, a cluster and an SVM entry: the same list of names, documented."""
    schema = inventory_schema()
    places = [
        ("$defs", "settings", "properties"),
        ("$defs", "group", "properties"),
        ("$defs", "cluster", "properties"),
        ("$defs", "svmEntry", "anyOf", 1, "properties"),
    ]
    for place in places:
        properties = at(schema, *place)
        assert "key_servers" in properties
        assert at(properties, "retire_servers")["$ref"] == "#/$defs/retireServers"
    retire = at(schema, "$defs", "retireServers")
    assert (retire["maxItems"], retire["uniqueItems"]) == (4, True)
    assert retire["items"] == {"$ref": "#/$defs/serverName"}
    assert "migrate" in str(at(schema, "$defs", "settings", "properties", "retire_servers"))


def test_schema_accepts_retire_servers_written_well() -> None:
    """The control for the retire cases above: names at every level, [] to clear."""
    jsonschema = pytest.importorskip("jsonschema")
    document = {
        "version": 1,
        "defaults": {"key_servers": ["new1"], "retire_servers": ["old1", "old2:5696"]},
        "groups": {"g": {"retire_servers": []}},
        "clusters": [
            {
                **CLUSTERS[0],
                "groups": ["g"],
                "retire_servers": ["[fd20::1]", "o1", "o2", "o3"],
                "svms": ["svm_a", {"name": "svm_b", "retire_servers": ["old3"]}],
            }
        ],
    }
    validator = jsonschema.Draft202012Validator(inventory_schema())
    assert [e.message for e in validator.iter_errors(document)] == []


README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_inventory_sample_validates_against_the_schema() -> None:
    """The YAML sample of the README's "The inventory" section (with retire_servers) is valid."""
    jsonschema = pytest.importorskip("jsonschema")
    section = README.read_text(encoding="utf-8").split("## The inventory", 1)[1]
    sample = yaml.safe_load(section.split("```yaml\n", 1)[1].split("```", 1)[0])
    assert "retire_servers" in sample["defaults"]
    validator = jsonschema.Draft202012Validator(inventory_schema())
    assert [e.message for e in validator.iter_errors(sample)] == []


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    """The schema passes the metaschema (needs the optional jsonschema)."""
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.Draft202012Validator.check_schema(inventory_schema())
