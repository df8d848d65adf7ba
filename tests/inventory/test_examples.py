"""The example inventories in ``inventories/`` load, and a broken copy lists every mistake."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from bulkkm.inventory import SelectorKind, describe, load_inventory
from tests.inventory.conftest import ENV, load, problems_of

INVENTORIES = Path(__file__).resolve().parents[2] / "inventories"
EXAMPLES = sorted(p for p in INVENTORIES.iterdir() if p.suffix in {".yaml", ".yml", ".toml"})


def test_the_examples_are_all_there() -> None:
    """The four documented examples exist (so the parametrised tests below cannot go empty)."""
    assert {p.name for p in EXAMPLES} >= {
        "small-fleet.yaml",
        "multi-region.yaml",
        "migration.yaml",
        "fleet.toml",
    }


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_loads_cleanly(path: Path) -> None:
    """Each example validates, with its CA file found, and without warnings."""
    inventory = load(path)
    assert inventory.clusters
    assert inventory.warnings == ()
    assert all(c.tls.ca_file is not None and c.tls.ca_file.is_file() for c in inventory.clusters)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_names_its_missing_variables(path: Path) -> None:
    """Without the environment, every variable it refers to is reported as not set."""
    referenced = set(re.findall(r"env:(\w+)", path.read_text(encoding="utf-8")))
    problems = problems_of(path, environ={})
    reported = {
        re.sub(r"environment variable (\w+) is not set.*", r"\1", p.message) for p in problems
    }
    assert reported == referenced


def test_small_fleet_shows_every_kind_of_selection() -> None:
    """The small example uses all, a name, a glob, an override, exclusions and cluster scope."""
    inventory = load(INVENTORIES / "small-fleet.yaml")
    kinds = {s.kind for c in inventory.clusters for s in c.svms}
    assert kinds == set(SelectorKind)
    assert any(c.cluster_scope for c in inventory.clusters)
    assert any(c.exclude_svms for c in inventory.clusters)
    assert any(":" in c.host for c in inventory.clusters)


def test_multi_region_shows_windows_a_canary_and_a_rollout() -> None:
    """A production group's window, a cluster's own window over it, a canary, and waves."""
    inventory = load(INVENTORIES / "multi-region.yaml")
    clusters = {c.name: c for c in inventory.clusters}
    group_window = clusters["paris-01"].window
    assert group_window is not None
    assert group_window.tz == "Europe/Paris"
    assert clusters["frankfurt-01"].window is group_window
    tokyo = clusters["tokyo-01"].window
    assert tokyo is not None
    assert (tokyo.tz, tokyo.end < tokyo.start) == ("Asia/Tokyo", True)
    assert clusters["sydney-01"].window is None
    assert [c.name for c in inventory.clusters if c.wave is not None] == ["emea-admin-01"]
    assert clusters["emea-admin-01"].wave == 1
    assert inventory.rollout.waves is not None
    assert inventory.rollout.wave_order == "name"


def test_toml_example_has_a_group_window() -> None:
    """In fleet.toml the emea clusters have the group's window, the others none."""
    clusters = {c.name: c for c in load(INVENTORIES / "fleet.toml").clusters}
    window = clusters["paris-01"].window
    assert window is not None
    assert str(window) == "sat,sun 01:00-05:00 Europe/Paris"
    assert clusters["lyon-02"].window is window
    assert clusters["nyc-01"].window is None


def test_toml_example_resolves_like_its_yaml_counterpart() -> None:
    """fleet.toml and small-fleet.yaml describe paris-01 and lyon-02 with the same servers."""
    toml = {c.name: c for c in load(INVENTORIES / "fleet.toml").clusters}
    yaml = {c.name: c for c in load(INVENTORIES / "small-fleet.yaml").clusters}
    for name in ("paris-01", "lyon-02"):
        assert [s.key_servers for s in toml[name].svms] == [s.key_servers for s in yaml[name].svms]
        assert toml[name].limits.concurrency == yaml[name].limits.concurrency


NEW = ("kms-new-1.example.com:5696", "kms-new-2.example.com:5696")
OLD = ("kms-old-1.example.com:5696", "kms-old-2.example.com:5696")


def test_migration_adds_two_new_servers_and_retires_two_old_ones() -> None:
    """Defaults retire 2 old servers; a group, then an SVM entry, override the list."""
    clusters = {c.name: c for c in load(INVENTORIES / "migration.yaml").clusters}
    paris, lyon, nyc = clusters["paris-01"], clusters["lyon-02"], clusters["nyc-01"]
    assert tuple(s.server for s in paris.svms[0].key_servers) == NEW
    assert paris.svms[0].retire_servers == OLD
    # emea-legacy, listed after emea, brings its own old servers.
    assert lyon.groups == ("emea", "emea-legacy")
    assert lyon.svms[0].retire_servers == (
        "kms-old-emea.example.com:5696",
        "[fd20:8b1e:b255:4071::5]:5696",
    )
    assert [(s.pattern, s.retire_servers) for s in nyc.svms] == [("svm_*", OLD), ("svm_vault", ())]
    assert (nyc.cluster_scope, nyc.retire_servers) == (True, OLD)
    for cluster in clusters.values():
        for selector in cluster.svms:
            kept = {s.server for s in selector.key_servers}
            kept.update(n for s in selector.key_servers for n in s.secondary_key_servers)
            assert kept.isdisjoint(selector.retire_servers)


def test_describe_shows_what_migrate_retires() -> None:
    """Each key manager's line names its retired servers; a last line counts them."""
    lines = describe(load(INVENTORIES / "migration.yaml"))
    new = "kms-new-1.example.com:5696 (secondary kms-new-1-dr.example.com:5696), " + NEW[1]
    assert f"  all SVMs (*): {new}; retire {', '.join(OLD)}" in lines
    assert f"  SVM svm_vault: {new}" in lines
    assert f"  cluster scope: {new}; retire {', '.join(OLD)}" in lines
    assert lines[-1] == (
        "to retire (migrate only; apply never removes): 4 distinct key servers on 4 of those "
        "key managers; 2 removals known before discovery"
    )


def test_a_server_kept_and_retired_in_the_migration_example_is_reported_at_its_line(
    tmp_path: Path,
) -> None:
    """Keeping an old server by mistake: one problem, at the retire_servers line, naming both."""
    shutil.copytree(INVENTORIES, tmp_path, dirs_exist_ok=True)
    path = tmp_path / "migration.yaml"
    text = path.read_text(encoding="utf-8")
    assert text.count("    - kms-new-2.example.com\n") == 1
    path.write_text(text.replace("    - kms-new-2.example.com\n", "    - KMS-old-2.example.com\n"))
    (problem,) = problems_of(path)
    assert problem.key_path == "defaults.retire_servers[1]"
    assert problem.line is not None
    assert "- kms-old-2.example.com:5696" in text.splitlines()[problem.line - 1]
    assert problem.message.startswith(
        "kms-old-2.example.com:5696 is both retired and desired: key_servers lists it at "
        "defaults.key_servers[1]"
    )


BREAKAGES = [
    ("password: env:ONTAP_PASSWORD", "password: not-a-reference", "defaults.password"),
    ("ca_file: certs/fleet-ca.pem", "ca_file: certs/missing.pem", "defaults.tls.ca_file"),
    ("concurrency: 4 ", "concurrency: 0 ", "defaults.limits.concurrency"),
    (
        "secondary_key_servers: [kms1-dr.example.com]",
        "secondary_key_servers: [KMS1.example.com]",
        "defaults.key_servers[0].secondary_key_servers[0]",
    ),
    ("limits: {concurrency: 2}", "limits: {concurency: 2}", "groups.emea.limits.concurency"),
    ("address: 10.1.2.3", "address: https://10.1.2.3", "clusters[0].address"),
    ("address: lyon-02.example.com:8443", "adress: lyon-02.example.com", "clusters[1].adress"),
    ("- svm_finance", "- svm finance", "clusters[1].svms[0]"),
    ('exclude_svms: ["*_test"]', 'exclude_svms: ["*_[test"]', "clusters[1].exclude_svms[0]"),
    ("name: nyc-01", "name: paris-01", "clusters[2].name"),
]


def test_a_broken_copy_of_an_example_lists_every_mistake(tmp_path: Path) -> None:
    """Ten independent mistakes give ten problems, each at its own key path and line."""
    shutil.copytree(INVENTORIES, tmp_path, dirs_exist_ok=True)
    path = tmp_path / "small-fleet.yaml"
    text = path.read_text(encoding="utf-8")
    for old, new, _ in BREAKAGES:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    path.write_text(text, encoding="utf-8")
    lines = text.splitlines()
    problems = problems_of(path)
    # lyon-02 lost its address (the misspelt key): that is the one follow-on problem.
    expected = {key_path for _, _, key_path in BREAKAGES} | {"clusters[1].address"}
    assert {p.key_path for p in problems} == expected
    assert len(problems) == len(expected)
    by_path = {p.key_path: p for p in problems}
    for _, new, key_path in BREAKAGES:
        line = by_path[key_path].line
        assert line is not None
        assert new in lines[line - 1], (key_path, line)


def test_describe_prints_each_cluster_then_the_totals() -> None:
    """``validate`` output: address, limits, key managers with their servers, then totals."""
    lines = describe(load(INVENTORIES / "small-fleet.yaml"))
    servers = "kms1.example.com:5696 (secondary kms1-dr.example.com:5696), kms2.example.com:5696"
    assert lines == (
        "paris-01 at 10.1.2.3:443 (groups emea; concurrency 2, rate 10/s, timeout 30s)",
        f"  all SVMs (*): {servers}",
        "lyon-02 at lyon-02.example.com:8443 (groups emea; concurrency 2, rate 10/s, timeout 30s)",
        f"  SVM svm_finance: {servers}",
        "  SVM svm_hr: kms3.example.com:5696",
        f"  SVMs matching app_*: {servers}",
        "  excluding SVMs matching *_test",
        f"  cluster scope: {servers}",
        "nyc-01 at [fd20:8b1e:b255:4071::10]:443 (concurrency 4, rate 10/s, timeout 30s)",
        f"  cluster scope: {servers}",
        "3 clusters; key managers: 2 named SVMs, 1 SVM glob, 1 all-SVMs selection, "
        "2 cluster scopes; 3 distinct key servers; 7 targets known before discovery "
        "(globs and all-SVMs selections expand when the clusters are read)",
    )


def test_describe_ends_with_the_warnings(tmp_path: Path) -> None:
    """Warnings follow the totals, and an unverified cluster says so on its line."""
    path = tmp_path / "fleet.yaml"
    path.write_text(
        "version: 1\n"
        "defaults: {username: u, password: env:ONTAP_PASSWORD, key_servers: [k1]}\n"
        "clusters: [{name: c1, address: h1, svms: all, tls: {verify: false}}]\n",
        encoding="utf-8",
    )
    lines = describe(load_inventory(path, environ=ENV))
    assert lines[0] == "c1 at h1:443 (concurrency 4, no rate limit, timeout 30s; TLS NOT VERIFIED)"
    assert lines[-1] == (
        "warning: tls.verify is false for cluster c1: their HTTPS certificates are not checked"
    )
