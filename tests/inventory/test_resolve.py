"""Resolution: defaults < groups (in order) < cluster < SVM entry; mappings merge, lists replace."""

from __future__ import annotations

from pathlib import Path

import pytest

from bulkkm.inventory import (
    Cluster,
    DesiredServer,
    Limits,
    SelectorKind,
    SvmSelector,
    Tls,
)
from tests.inventory.conftest import Write, load

HEAD = """\
version: 1
defaults:
  username: admin
  password: env:ONTAP_PASSWORD
  key_servers: [kms1.example.com]
"""


def only_cluster(write: Write, text: str) -> Cluster:
    """Load ``text`` and return its single cluster."""
    (cluster,) = load(write(text)).clusters
    return cluster


def servers(selector_or_cluster: SvmSelector | Cluster) -> tuple[str, ...]:
    """The primary server names of a selector or of a cluster's own list."""
    return tuple(s.server for s in selector_or_cluster.key_servers)


def test_unset_values_take_the_documented_defaults(write: Write) -> None:
    """Limits 4 / none / 30 s, TLS verified, port 443, no cluster scope, no groups."""
    cluster = only_cluster(write, HEAD + "clusters: [{name: c1, address: h1, svms: all}]\n")
    assert cluster.limits == Limits(concurrency=4, rate=None, timeout=30.0)
    assert cluster.tls == Tls(verify=True)
    assert (cluster.port, cluster.cluster_scope, cluster.groups) == (443, False, ())
    assert cluster.username == "admin"


def test_limits_merge_key_by_key_through_every_layer(write: Write) -> None:
    """Each limit comes from the highest layer that sets it."""
    text = HEAD + (
        "  limits: {concurrency: 4, rate: 20, timeout: 30}\n"
        "groups:\n"
        "  a: {limits: {concurrency: 2}}\n"
        "  b: {limits: {timeout: 60}}\n"
        "clusters:\n"
        "  - {name: c1, address: h1, svms: all, groups: [a, b], limits: {rate: 5}}\n"
    )
    assert only_cluster(write, text).limits == Limits(concurrency=2, rate=5.0, timeout=60.0)


@pytest.mark.parametrize(
    ("groups", "concurrency"),
    [
        pytest.param("[a, b]", 2, id="b-listed-last-wins"),
        pytest.param("[b, a]", 1, id="a-listed-last-wins"),
    ],
)
def test_the_group_listed_later_wins(write: Write, groups: str, concurrency: int) -> None:
    """Groups apply in the order the cluster lists them, later over earlier."""
    text = HEAD + (
        "groups:\n"
        "  a: {limits: {concurrency: 1}}\n"
        "  b: {limits: {concurrency: 2}}\n"
        "clusters:\n"
        f"  - {{name: c1, address: h1, svms: all, groups: {groups}}}\n"
    )
    assert only_cluster(write, text).limits.concurrency == concurrency


def test_the_cluster_wins_over_its_groups_and_groups_over_defaults(write: Write) -> None:
    """A value set on the cluster beats its groups', which beat the defaults'."""
    text = HEAD + (
        "groups:\n"
        "  g: {username: group-user, limits: {concurrency: 2}}\n"
        "clusters:\n"
        "  - {name: c1, address: h1, svms: all, groups: [g], limits: {concurrency: 7}}\n"
        "  - {name: c2, address: h2, svms: all, groups: [g]}\n"
    )
    c1, c2 = load(write(text)).clusters
    assert (c1.limits.concurrency, c2.limits.concurrency) == (7, 2)
    assert (c1.username, c2.username) == ("group-user", "group-user")


def test_key_server_lists_replace_at_each_layer(write: Write) -> None:
    """key_servers are replaced, never merged: defaults < group < cluster < SVM entry."""
    text = """\
        version: 1
        defaults:
          username: admin
          password: env:ONTAP_PASSWORD
          key_servers: [d1, d2]
        groups:
          g: {key_servers: [g1]}
        clusters:
          - name: only-defaults
            address: h1
            svms: all
          - name: from-group
            address: h2
            groups: [g]
            svms: all
          - name: own
            address: h3
            groups: [g]
            key_servers: [c1]
            cluster_scope: true
            svms:
              - svm_a
              - {name: svm_b, key_servers: [s1, s2]}
    """
    first, second, third = load(write(text)).clusters
    assert servers(first.svms[0]) == ("d1:5696", "d2:5696")
    assert servers(second.svms[0]) == ("g1:5696",)
    assert servers(third) == ("c1:5696",)
    assert [servers(s) for s in third.svms] == [("c1:5696",), ("s1:5696", "s2:5696")]


def test_tls_merges_key_by_key(write: Write, certs_dir: Path) -> None:
    """A group setting verify keeps the CA file the defaults set."""
    text = HEAD + (
        "  tls: {ca_file: certs/ca.pem}\n"
        "groups:\n"
        "  lab: {tls: {verify: false}}\n"
        "clusters:\n"
        "  - {name: c1, address: h1, svms: all, groups: [lab]}\n"
    )
    cluster = only_cluster(write, text)
    assert cluster.tls == Tls(verify=False, ca_file=certs_dir / "ca.pem")


def test_rate_null_removes_an_inherited_rate(write: Write) -> None:
    """``rate: null`` in a higher layer means no rate limit, whatever is inherited."""
    text = HEAD + (
        "  limits: {rate: 20}\n"
        "clusters:\n"
        "  - {name: c1, address: h1, svms: all, limits: {rate: null}}\n"
        "  - {name: c2, address: h2, svms: all}\n"
    )
    c1, c2 = load(write(text)).clusters
    assert (c1.limits.rate, c2.limits.rate) == (None, 20.0)


def test_whole_numbers_written_as_floats_are_accepted_for_concurrency(write: Write) -> None:
    """``concurrency: 4.0`` is 4, as JSON Schema's ``integer`` also allows."""
    text = HEAD + "clusters: [{name: c1, address: h1, svms: all, limits: {concurrency: 4.0}}]\n"
    concurrency = only_cluster(write, text).limits.concurrency
    assert concurrency == 4
    assert isinstance(concurrency, int)


def test_selection_is_inherited_and_lists_replace(write: Write) -> None:
    """svms, exclude_svms and cluster_scope inherit like the rest; their lists replace."""
    text = HEAD + (
        "  svms: all\n"
        "  exclude_svms: ['*_test']\n"
        "groups:\n"
        "  admin: {cluster_scope: true, svms: []}\n"
        "clusters:\n"
        "  - {name: c1, address: h1}\n"
        "  - {name: c2, address: h2, groups: [admin]}\n"
        "  - {name: c3, address: h3, svms: [svm_a], exclude_svms: ['*_dr']}\n"
    )
    c1, c2, c3 = load(write(text)).clusters
    assert [(s.kind, s.pattern) for s in c1.svms] == [(SelectorKind.ALL, "*")]
    assert (c1.exclude_svms, c1.cluster_scope) == (("*_test",), False)
    assert (c2.svms, c2.cluster_scope, servers(c2)) == ((), True, ("kms1.example.com:5696",))
    assert [(s.kind, s.pattern) for s in c3.svms] == [(SelectorKind.NAME, "svm_a")]
    assert c3.exclude_svms == ("*_dr",)


def test_svm_entries_become_selectors_of_their_kind(write: Write) -> None:
    """Names, globs and mapping entries map to NAME/GLOB selectors, in order."""
    text = HEAD + (
        "clusters:\n"
        "  - name: c1\n"
        "    address: h1\n"
        "    svms:\n"
        "      - svm_finance\n"
        "      - 'app_*'\n"
        "      - {name: 'db[0-9]?', key_servers: [kms9]}\n"
        "      - {name: svm.hr-1}\n"
        "    exclude_svms: ['app_test']\n"
    )
    cluster = only_cluster(write, text)
    assert [(s.kind, s.pattern, servers(s)) for s in cluster.svms] == [
        (SelectorKind.NAME, "svm_finance", ("kms1.example.com:5696",)),
        (SelectorKind.GLOB, "app_*", ("kms1.example.com:5696",)),
        (SelectorKind.GLOB, "db[0-9]?", ("kms9:5696",)),
        (SelectorKind.NAME, "svm.hr-1", ("kms1.example.com:5696",)),
    ]
    assert cluster.selector_for("app_web") is cluster.svms[1]
    assert cluster.selector_for("app_test") is None
    assert cluster.selector_for("db7x") is cluster.svms[2]


@pytest.mark.parametrize(
    ("address", "host", "port", "url"),
    [
        ("10.1.2.3", "10.1.2.3", 443, "10.1.2.3:443"),
        ("Cluster-1.Example.COM:8443", "cluster-1.example.com", 8443, "cluster-1.example.com:8443"),
        ("'[fd20::10]'", "fd20::10", 443, "[fd20::10]:443"),
        ("'[FD20:0::10]:8443'", "fd20::10", 8443, "[fd20::10]:8443"),
        ("fd20::10", "fd20::10", 443, "[fd20::10]:443"),
    ],
)
def test_cluster_addresses_resolve_to_host_and_port(
    write: Write, address: str, host: str, port: int, url: str
) -> None:
    """host, host:port, [v6] and [v6]:port; port 443 by default; names lower-cased."""
    cluster = only_cluster(
        write, HEAD + f"clusters: [{{name: c1, address: {address}, svms: all}}]\n"
    )
    assert (cluster.host, cluster.port, cluster.address) == (host, port, url)


@pytest.mark.parametrize(
    ("written", "server", "secondaries"),
    [
        ("KMS1.Example.com", "kms1.example.com:5696", ()),
        ("kms1:5697", "kms1:5697", ()),
        ("'[fd20::1]'", "[fd20::1]:5696", ()),
        ("'fd20:0::1'", "[fd20::1]:5696", ()),
        ("'[fd20::1]:15696'", "[fd20::1]:15696", ()),
        ("{server: k1, secondary_key_servers: [K2, 'k3:1']}", "k1:5696", ("k2:5696", "k3:1")),
    ],
)
def test_key_server_names_are_normalised(
    write: Write, written: str, server: str, secondaries: tuple[str, ...]
) -> None:
    """Port 5696 implied, host names lower-cased, IPv6 canonical and bracketed."""
    text = HEAD.replace("[kms1.example.com]", f"[{written}]") + (
        "clusters: [{name: c1, address: h1, svms: all}]\n"
    )
    (desired,) = only_cluster(write, text).svms[0].key_servers
    assert desired == DesiredServer(server=server, secondary_key_servers=secondaries)


def test_an_excluded_explicit_svm_is_warned_about(write: Write) -> None:
    """An SVM named on purpose but matched by exclude_svms is skipped: say so."""
    text = (
        HEAD + "clusters: [{name: c1, address: h1, svms: [svm_test], exclude_svms: ['*_test']}]\n"
    )
    inventory = load(write(text))
    assert inventory.warnings == (
        "clusters[0] (c1): SVM 'svm_test' is listed but also matches exclude_svms '*_test', "
        "so it is skipped",
    )


def test_clusters_sharing_groups_share_resolved_values(write: Write) -> None:
    """Layers are resolved once: clusters with the same groups get the same objects."""
    text = HEAD + (
        "groups: {g: {limits: {concurrency: 2}}}\n"
        "clusters:\n"
        "  - {name: c1, address: h1, svms: all, groups: [g]}\n"
        "  - {name: c2, address: h2, svms: all, groups: [g]}\n"
    )
    c1, c2 = load(write(text)).clusters
    assert c1.limits is c2.limits
    assert c1.tls is c2.tls
    assert c1.svms[0].key_servers is c2.svms[0].key_servers


def test_a_defaults_password_that_every_cluster_overrides_is_never_resolved(write: Write) -> None:
    """References are resolved for the clusters that use them, so an unused one is no error."""
    text = HEAD.replace("env:ONTAP_PASSWORD", "env:NOT_SET_ANYWHERE") + (
        "clusters: [{name: c1, address: h1, svms: all, password: env:ONTAP_PASSWORD}]\n"
    )
    assert only_cluster(write, text).password is not None


def test_a_cluster_list_no_key_manager_uses_is_not_resolved(write: Write) -> None:
    """An inherited list that no key manager uses is not resolved: its bad secret is no error."""
    text = (
        HEAD.replace(
            "key_servers: [kms1.example.com]",
            "key_servers: [{server: kms1.example.com, password: env:NOT_SET_ANYWHERE}]",
        )
        + "clusters: [{name: c1, address: h1, svms: [{name: svm_a, key_servers: [k2]}]}]\n"
    )
    cluster = only_cluster(write, text)
    assert (servers(cluster.svms[0]), cluster.key_servers) == (("k2:5696",), ())


# -- retire_servers ----------------------------------------------------------------------

RETIRING = """\
version: 1
defaults:
  username: admin
  password: env:ONTAP_PASSWORD
  key_servers: [new1]
  retire_servers: [d1, d2]
groups:
  a: {retire_servers: [a1]}
  b: {retire_servers: [b1]}
  done: {retire_servers: []}
clusters:
  - {name: from-defaults, address: h1, svms: all}
  - {name: a-then-b, address: h2, groups: [a, b], svms: all}
  - {name: b-then-a, address: h3, groups: [b, a], svms: all}
  - {name: emptied, address: h4, groups: [a, done], svms: all}
  - name: own
    address: h5
    groups: [a]
    retire_servers: [c1]
    cluster_scope: true
    svms:
      - svm_a
      - {name: svm_b, retire_servers: [s1, s2]}
      - {name: svm_c, retire_servers: []}
      - {name: svm_d, key_servers: [new2]}
"""


def test_retire_lists_replace_at_each_layer_like_key_servers(write: Write) -> None:
    """defaults < groups (later wins) < cluster < SVM entry; a list replaces, [] clears."""
    clusters = {c.name: c for c in load(write(RETIRING)).clusters}
    assert clusters["from-defaults"].svms[0].retire_servers == ("d1:5696", "d2:5696")
    assert clusters["a-then-b"].svms[0].retire_servers == ("b1:5696",)
    assert clusters["b-then-a"].svms[0].retire_servers == ("a1:5696",)
    assert clusters["emptied"].svms[0].retire_servers == ()
    own = clusters["own"]
    assert own.retire_servers == ("c1:5696",)  # the cluster-scoped key manager's
    assert [(s.pattern, s.retire_servers) for s in own.svms] == [
        ("svm_a", ("c1:5696",)),
        ("svm_b", ("s1:5696", "s2:5696")),
        ("svm_c", ()),
        ("svm_d", ("c1:5696",)),  # its own key_servers, the cluster's retire_servers
    ]
    assert servers(own.svms[3]) == ("new2:5696",)


def test_without_retire_servers_nothing_is_retired(write: Write) -> None:
    """No retire_servers anywhere: every key manager's retire list is empty."""
    text = HEAD + "clusters: [{name: c1, address: h1, svms: all, cluster_scope: true}]\n"
    cluster = only_cluster(write, text)
    assert (cluster.retire_servers, cluster.svms[0].retire_servers) == ((), ())


def test_clusters_sharing_a_retire_list_share_one_tuple(write: Write) -> None:
    """A list written once is resolved once, shared by every key manager that inherits it."""
    text = HEAD + (
        "  retire_servers: [old1]\n"
        "clusters:\n"
        "  - {name: c1, address: h1, svms: all}\n"
        "  - {name: c2, address: h2, svms: [svm_a, svm_b], cluster_scope: true}\n"
    )
    c1, c2 = load(write(text)).clusters
    assert c1.svms[0].retire_servers == ("old1:5696",)
    assert c2.svms[0].retire_servers is c1.svms[0].retire_servers
    assert c2.svms[1].retire_servers is c1.svms[0].retire_servers
    assert c2.retire_servers is c1.svms[0].retire_servers


@pytest.mark.parametrize(
    ("written", "retired"),
    [
        ("KMS-Old.Example.COM", "kms-old.example.com:5696"),
        ("kms-old:5697", "kms-old:5697"),
        ("10.0.0.9", "10.0.0.9:5696"),
        ("'[fd20::1]'", "[fd20::1]:5696"),
        ("'FD20:0:0::1'", "[fd20::1]:5696"),
        ("'[fd20::1]:15696'", "[fd20::1]:15696"),
    ],
)
def test_retire_server_names_are_normalised(write: Write, written: str, retired: str) -> None:
    """As key_servers: port 5696 implied, host names lower-cased, IPv6 canonical in brackets."""
    text = (
        HEAD
        + f"  retire_servers: [{written}]\n"
        + ("clusters: [{name: c1, address: h1, svms: all}]\n")
    )
    assert only_cluster(write, text).svms[0].retire_servers == (retired,)


def test_a_server_kept_and_retired_in_different_key_managers_is_no_error(write: Write) -> None:
    """The rule is per key manager, after inheritance: SVM a keeps old1, SVM b retires it."""
    text = HEAD + (
        "  retire_servers: [old1]\n"
        "clusters:\n"
        "  - name: c1\n"
        "    address: h1\n"
        "    key_servers: [old1]\n"  # overridden by every key manager below: never used
        "    svms:\n"
        "      - {name: svm_a, key_servers: [new1, old1], retire_servers: []}\n"
        "      - {name: svm_b, key_servers: [new1]}\n"
    )
    svm_a, svm_b = only_cluster(write, text).svms
    assert (servers(svm_a), svm_a.retire_servers) == (("new1:5696", "old1:5696"), ())
    assert (servers(svm_b), svm_b.retire_servers) == (("new1:5696",), ("old1:5696",))


def test_toml_takes_retire_servers_at_every_level(write: Write) -> None:
    """The TOML loader reads the same keys: defaults, a group, a cluster and an SVM entry."""
    text = """\
        version = 1

        [defaults]
        username = "admin"
        password = "env:ONTAP_PASSWORD"
        key_servers = ["new1"]
        retire_servers = ["OLD1", "old2:5696"]

        [groups.g]
        retire_servers = ["g1"]

        [[clusters]]
        name = "c1"
        address = "h1"
        svms = "all"

        [[clusters]]
        name = "c2"
        address = "h2"
        groups = ["g"]
        retire_servers = ["c2-old"]
        cluster_scope = true
        svms = ["svm_a", { name = "svm_b", retire_servers = ["fd20::1"] }]

        [[clusters]]
        name = "c3"
        address = "h3"
        groups = ["g"]
        svms = "all"
    """
    c1, c2, c3 = load(write(text, "fleet.toml")).clusters
    assert c1.svms[0].retire_servers == ("old1:5696", "old2:5696")
    assert c2.retire_servers == ("c2-old:5696",)
    assert [s.retire_servers for s in c2.svms] == [("c2-old:5696",), ("[fd20::1]:5696",)]
    assert c3.svms[0].retire_servers == ("g1:5696",)


def test_only_a_selected_cluster_scope_has_a_retire_list(write: Write) -> None:
    """Without cluster_scope the cluster's own list is empty; its SVMs still inherit the list."""
    text = HEAD + (
        "  retire_servers: [old1]\n"
        "clusters:\n"
        "  - {name: c1, address: h1, svms: all}\n"
        "  - {name: c2, address: h2, svms: all, cluster_scope: true}\n"
    )
    c1, c2 = load(write(text)).clusters
    assert (c1.retire_servers, c1.svms[0].retire_servers) == ((), ("old1:5696",))
    assert (c2.retire_servers, c2.svms[0].retire_servers) == (("old1:5696",), ("old1:5696",))
