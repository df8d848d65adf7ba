"""``region:``: which regional worker reaches a cluster, inherited like ``window:``."""

from __future__ import annotations

import pytest

from bulkkm.inventory import Cluster, describe
from tests.inventory.conftest import Write, load, marked_line, problems_of

HEAD = """\
version: 1
defaults:
  username: admin
  password: env:ONTAP_PASSWORD
  key_servers: [kms1.example.com]
"""
REGIONS = HEAD + (
    "  region: eu-west\n"
    "groups:\n"
    "  us: {region: us-east}\n"
    "  nowhere: {region: null}\n"
    "  plain: {}\n"
    "clusters:\n"
    "  - {name: from-defaults, address: h1, svms: all, groups: [plain]}\n"
    "  - {name: from-group, address: h2, svms: all, groups: [us]}\n"
    "  - {name: later-group-wins, address: h3, svms: all, groups: [us, nowhere]}\n"
    "  - {name: own-region, address: h4, svms: all, groups: [us], region: apac_1}\n"
)


def by_name(write: Write, text: str) -> dict[str, Cluster]:
    """Write ``text``, load it; its clusters by name."""
    return {c.name: c for c in load(write(text, "fleet.yaml")).clusters}


@pytest.mark.parametrize(
    ("cluster", "expected"),
    [
        pytest.param("from-defaults", "eu-west", id="defaults"),
        pytest.param("from-group", "us-east", id="group"),
        pytest.param("later-group-wins", None, id="null-removes-it"),
        pytest.param("own-region", "apac_1", id="cluster-over-groups"),
    ],
)
def test_a_region_is_inherited_from_defaults_groups_and_the_cluster(
    write: Write, cluster: str, expected: str | None
) -> None:
    """``region:`` on the cluster wins over its groups, groups over defaults; null: none."""
    assert by_name(write, REGIONS)[cluster].region == expected


def test_no_region_anywhere_means_none(write: Write) -> None:
    """Without ``region:`` a cluster has none (the in-process engine does not need one)."""
    one = HEAD + "clusters: [{name: c1, address: h1, svms: all}]\n"
    assert by_name(write, one)["c1"].region is None


def test_describe_shows_the_region(write: Write) -> None:
    """``validate`` names each cluster's region."""
    text = "\n".join(describe(load(write(REGIONS, "fleet.yaml"))))
    assert "from-group at h2:443" in text
    assert "region us-east" in text


@pytest.mark.parametrize(
    ("line", "message"),
    [
        pytest.param("region: EU  # <-", "got 'EU'", id="upper-case"),
        pytest.param("region: -eu  # <-", "starting with a letter or digit", id="leading-dash"),
        pytest.param("region: eu west  # <-", "got 'eu west'", id="space"),
        pytest.param("region: 7  # <-", "got an integer", id="number"),
        pytest.param("region: [eu]  # <-", "got a list", id="list"),
        pytest.param(f"region: {'a' * 64}  # <-", "at most 63 characters", id="too-long"),
        pytest.param("regoin: eu  # <-", "did you mean 'region'?", id="did-you-mean"),
    ],
)
def test_a_region_written_wrongly_is_one_problem_at_its_line(
    write: Write, line: str, message: str
) -> None:
    """A bad region, or a near miss of the key, is reported at its line and key path."""
    text = HEAD + f"clusters:\n  - name: c1\n    address: h1\n    svms: all\n    {line}\n"
    path = write(text, "fleet.yaml")
    (problem,) = problems_of(path)
    assert message in problem.message
    assert problem.line == marked_line(text)
    key = "regoin" if "regoin" in line else "region"
    assert problem.key_path == f"clusters[0].{key}"
