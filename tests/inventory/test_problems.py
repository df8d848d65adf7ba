"""Each rule of the format: a file breaking it yields exactly one problem, located exactly.

Every case is a whole file; the line the problem must point at carries a ``# <-`` marker
(no marker: the problem has no line). Exactly one problem is expected, so a mistake that
set off a cascade of follow-on problems would fail too.
"""

from __future__ import annotations

import pytest

from tests.inventory.conftest import Write, marked_line, problems_of

HEAD = """\
version: 1
defaults:
  username: admin
  password: env:ONTAP_PASSWORD
  key_servers: [kms1.example.com]
"""
"""Five lines of valid defaults that most cases start with."""
ONE = "clusters: [{name: c1, address: h1, svms: all}]\n"
"""A valid list of one cluster."""


def windowed(*lines: str, header: str = "window:") -> str:
    """A file whose one cluster has a block ``window:`` made of ``lines``."""
    body = "".join(f"      {line}\n" for line in lines)
    return HEAD + f"clusters:\n  - name: c1\n    address: h1\n    svms: all\n    {header}\n{body}"


DAYS = "days: [sat, sun]"
START = 'start: "01:00"'
END = 'end: "05:00"'
TZ = "tz: Europe/Paris"

CASES = [
    # -- the top level -----------------------------------------------------------------
    pytest.param(
        HEAD.replace("version: 1\n", "").replace("defaults:", "defaults:  # <-") + ONE,
        "version",
        "version is required",
        id="version-missing",
    ),
    pytest.param(
        HEAD.replace("version: 1", "version: 2  # <-") + ONE,
        "version",
        "unsupported version 2",
        id="version-unsupported",
    ),
    pytest.param(
        HEAD.replace("version: 1", "version: '1'  # <-") + ONE,
        "version",
        "expected the number 1, got a string",
        id="version-string",
    ),
    pytest.param(
        HEAD.replace("version: 1", "version: true  # <-") + ONE,
        "version",
        "got a boolean",
        id="version-boolean",
    ),
    pytest.param(
        HEAD + "clusterz: []  # <-\n" + ONE,
        "clusterz",
        "unknown key 'clusterz'; did you mean 'clusters'?",
        id="top-unknown-key-near-miss",
    ),
    pytest.param(
        HEAD + "tls: {}  # <-\n" + ONE,
        "tls",
        "it belongs under 'defaults:' or in a cluster",
        id="top-settings-key-misplaced",
    ),
    pytest.param(
        "version: 1  # <-\ndefaults: {}\n",
        "clusters",
        "clusters is required",
        id="clusters-missing",
    ),
    pytest.param(
        HEAD + "clusters: {c1: {}}  # <-\n",
        "clusters",
        "expected a list of clusters, got a mapping",
        id="clusters-not-a-list",
    ),
    pytest.param(
        HEAD + "clusters: []  # <-\n",
        "clusters",
        "the list of clusters is empty",
        id="clusters-empty",
    ),
    pytest.param(
        HEAD + "allow_plaintext_secrets: sometimes  # <-\n" + ONE,
        "allow_plaintext_secrets",
        "expected true or false, got a string",
        id="allow-plaintext-not-boolean",
    ),
    # -- a cluster entry ---------------------------------------------------------------
    pytest.param(
        HEAD + "clusters:\n  - c1  # <-\n",
        "clusters[0]",
        "expected a cluster (a mapping with name: and address:), got a string",
        id="cluster-not-a-mapping",
    ),
    pytest.param(
        HEAD + "clusters:\n  - address: h1  # <-\n    svms: all\n",
        "clusters[0].name",
        "name is required",
        id="cluster-name-missing",
    ),
    pytest.param(
        HEAD + "clusters:\n  - name: paris 01  # <-\n    address: h1\n    svms: all\n",
        "clusters[0].name",
        "'paris 01' is not a valid cluster name",
        id="cluster-name-invalid",
    ),
    pytest.param(
        HEAD + "clusters:\n  - name: ''  # <-\n    address: h1\n    svms: all\n",
        "clusters[0].name",
        "expected a cluster name, got an empty string",
        id="cluster-name-empty",
    ),
    pytest.param(
        HEAD + "clusters:\n  - {name: c1, address: h1, svms: all}\n"
        "  - {name: c1, address: h2, svms: all}  # <-\n",
        "clusters[1].name",
        "cluster name 'c1' is also used by clusters[0]",
        id="cluster-name-duplicate",
    ),
    pytest.param(
        HEAD + "clusters:\n  - name: c1  # <-\n    svms: all\n",
        "clusters[0].address",
        "address is required",
        id="address-missing",
    ),
    pytest.param(
        HEAD
        + "clusters:\n  - name: c1\n    address: https://h1.example.com  # <-\n    svms: all\n",
        "clusters[0].address",
        "has a scheme: always https; write the host only",
        id="address-https-scheme",
    ),
    pytest.param(
        HEAD + "clusters:\n  - name: c1\n    address: http://h1:8080  # <-\n    svms: all\n",
        "clusters[0].address",
        "always https; write the host only",
        id="address-http-scheme",
    ),
    pytest.param(
        HEAD + "clusters:\n  - name: c1\n    address: h1:70000  # <-\n    svms: all\n",
        "clusters[0].address",
        "port '70000' is not a number from 1 to 65535",
        id="address-port-out-of-range",
    ),
    pytest.param(
        HEAD + "clusters:\n  - name: c1\n    address: bad host  # <-\n    svms: all\n",
        "clusters[0].address",
        "is not a valid host name",
        id="address-invalid-host",
    ),
    pytest.param(
        HEAD + "clusters:\n  - name: c1\n    address: '[fd20::1'  # <-\n    svms: all\n",
        "clusters[0].address",
        "missing ']'",
        id="address-ipv6-unclosed",
    ),
    pytest.param(
        HEAD + "clusters:\n  - name: c1\n    address: 10  # <-\n    svms: all\n",
        "clusters[0].address",
        "expected a host name or IP address, got an integer",
        id="address-not-a-string",
    ),
    pytest.param(
        HEAD + "clusters:\n  - {name: c1, address: H1.example.com, svms: all}\n"
        "  - {name: c2, address: 'h1.example.com:443', svms: all}  # <-\n",
        "clusters[1].address",
        "this address is also the address of clusters[0]",
        id="address-duplicate-after-normalising",
    ),
    pytest.param(
        HEAD + "clusters:\n  - name: c1\n    adress: h1  # <-\n    address: h1\n    svms: all\n",
        "clusters[0].adress",
        "unknown key 'adress'; did you mean 'address'?",
        id="cluster-unknown-key-near-miss",
    ),
    pytest.param(
        HEAD + "clusters:\n  - name: c1\n    address: h1\n    svms: all\n    verify: false  # <-\n",
        "clusters[0].verify",
        "it belongs under 'tls:'",
        id="cluster-tls-key-misplaced",
    ),
    pytest.param(
        HEAD + "clusters:\n  - name: c1\n    address: h1\n    svms: all\n    frobnicate: 1  # <-\n",
        "clusters[0].frobnicate",
        "unknown key 'frobnicate'; expected one of name, address, groups",
        id="cluster-unknown-key",
    ),
    pytest.param(
        HEAD + "groups: {emea: {}}\nclusters:\n  - name: c1\n    address: h1\n    svms: all\n"
        "    groups: emea  # <-\n",
        "clusters[0].groups",
        "expected a list of group names, got a string",
        id="cluster-groups-not-a-list",
    ),
    pytest.param(
        HEAD + "groups: {emea: {}}\nclusters:\n  - name: c1\n    address: h1\n    svms: all\n"
        "    groups:\n      - emae  # <-\n",
        "clusters[0].groups[0]",
        "there is no group 'emae'; did you mean 'emea'?",
        id="cluster-group-unknown",
    ),
    pytest.param(
        HEAD + "groups: {emea: {}}\nclusters:\n  - name: c1\n    address: h1\n    svms: all\n"
        "    groups:\n      - emea\n      - emea  # <-\n",
        "clusters[0].groups[1]",
        "group 'emea' is listed twice",
        id="cluster-group-twice",
    ),
    # -- what a cluster selects --------------------------------------------------------
    pytest.param(
        HEAD + "clusters:\n  - name: c1  # <-\n    address: h1\n",
        "clusters[0]",
        "the cluster selects no key manager",
        id="selects-no-key-manager",
    ),
    pytest.param(
        HEAD + "clusters:\n  - name: c1\n    address: h1\n    svms: []  # <-\n",
        "clusters[0].svms",
        "svms is empty, so the cluster selects no key manager",
        id="svms-empty-list",
    ),
    pytest.param(
        HEAD + "clusters:\n  - name: c1\n    address: h1\n    svms: everything  # <-\n",
        "clusters[0].svms",
        "expected 'all' or a list of SVM names, globs or {name, key_servers} entries, "
        "got the string 'everything'",
        id="svms-string-not-all",
    ),
    pytest.param(
        HEAD + "clusters:\n  - name: c1\n    address: h1\n    svms:\n      - svm a  # <-\n",
        "clusters[0].svms[0]",
        "'svm a' is not a valid SVM name",
        id="svm-name-invalid",
    ),
    pytest.param(
        HEAD + "clusters:\n  - name: c1\n    address: h1\n    svms:\n      - 'app_[ab'  # <-\n",
        "clusters[0].svms[0]",
        "the glob 'app_[ab' has a '[' that is never closed",
        id="svm-glob-unclosed",
    ),
    pytest.param(
        HEAD + "clusters:\n  - name: c1\n    address: h1\n    svms:\n      - 'app *'  # <-\n",
        "clusters[0].svms[0]",
        "may hold only letters, digits",
        id="svm-glob-bad-character",
    ),
    pytest.param(
        HEAD + "clusters:\n  - name: c1\n    address: h1\n    svms:\n      - svm_a\n"
        "      - name: svm_a  # <-\n",
        "clusters[0].svms[1]",
        "SVM 'svm_a' is listed twice (also at clusters[0].svms[0])",
        id="svm-name-twice",
    ),
    pytest.param(
        HEAD
        + "clusters:\n  - name: c1\n    address: h1\n    svms:\n      - svm_a\n      - all  # <-\n",
        "clusters[0].svms[1]",
        "'all' cannot be one entry of a list: write 'svms: all'",
        id="svm-all-in-list",
    ),
    pytest.param(
        HEAD + "clusters:\n  - name: c1\n    address: h1\n    svms:\n"
        "      - key_servers: [kms2.example.com]  # <-\n",
        "clusters[0].svms[0].name",
        "name is required (an SVM name or glob)",
        id="svm-mapping-without-name",
    ),
    pytest.param(
        HEAD + "clusters:\n  - name: c1\n    address: h1\n    svms:\n      - name: svm_a\n"
        "        key_server: [kms2.example.com]  # <-\n",
        "clusters[0].svms[0].key_server",
        "did you mean 'key_servers'?",
        id="svm-mapping-unknown-key",
    ),
    pytest.param(
        HEAD + "clusters:\n  - name: c1\n    address: h1\n    svms:\n      - 42  # <-\n",
        "clusters[0].svms[0]",
        "expected an SVM name, a glob or a mapping with name: (and key_servers:), got an integer",
        id="svm-entry-wrong-type",
    ),
    pytest.param(
        HEAD + "clusters:\n  - name: c1\n    address: h1\n    svms: all\n"
        "    exclude_svms: '*_test'  # <-\n",
        "clusters[0].exclude_svms",
        "expected a list of SVM names or globs, got a string",
        id="exclude-svms-not-a-list",
    ),
    pytest.param(
        HEAD + "clusters:\n  - name: c1\n    address: h1\n    svms: all\n"
        "    exclude_svms:\n      - '*_[test'  # <-\n",
        "clusters[0].exclude_svms[0]",
        "has a '[' that is never closed",
        id="exclude-svms-bad-glob",
    ),
    pytest.param(
        HEAD + "clusters:\n  - name: c1\n    address: h1\n    cluster_scope: please  # <-\n",
        "clusters[0].cluster_scope",
        "expected true or false, got a string",
        id="cluster-scope-not-boolean",
    ),
    # -- a selected key manager needs key servers -------------------------------------
    pytest.param(
        "version: 1\ndefaults: {username: u, password: env:ONTAP_PASSWORD}\n"
        "clusters:\n  - name: c1\n    address: h1\n    svms:\n      - svm_a  # <-\n",
        "clusters[0].svms[0]",
        "SVM 'svm_a' has no key servers",
        id="named-svm-without-key-servers",
    ),
    pytest.param(
        "version: 1\ndefaults: {username: u, password: env:ONTAP_PASSWORD}\n"
        "clusters:\n  - name: c1\n    address: h1\n    svms: ['app_*']  # <-\n",
        "clusters[0].svms[0]",
        "the SVM glob 'app_*' has no key servers",
        id="glob-without-key-servers",
    ),
    pytest.param(
        "version: 1\ndefaults: {username: u, password: env:ONTAP_PASSWORD}\n"
        "clusters:\n  - name: c1\n    address: h1\n    svms: all  # <-\n",
        "clusters[0].svms",
        "svms: all has no key servers",
        id="all-without-key-servers",
    ),
    pytest.param(
        "version: 1\ndefaults: {username: u, password: env:ONTAP_PASSWORD}\n"
        "clusters:\n  - name: c1\n    address: h1\n    cluster_scope: true  # <-\n",
        "clusters[0].cluster_scope",
        "the cluster scope has no key servers",
        id="cluster-scope-without-key-servers",
    ),
    pytest.param(
        "version: 1\ndefaults: {username: u, password: env:ONTAP_PASSWORD, svms: all}\n"
        "clusters:\n  - name: c1  # <-\n    address: h1\n",
        "clusters[0]",
        "svms: all has no key servers: set key_servers on the cluster, in one of its groups "
        "or in defaults (inherited from defaults.svms)",
        id="inherited-selection-without-key-servers",
    ),
    pytest.param(
        HEAD + "clusters:\n  - name: c1\n    address: h1\n    svms:\n      - name: svm_a\n"
        "        key_servers: []  # <-\n",
        "clusters[0].svms[0].key_servers",
        "key_servers is empty, so SVM 'svm_a' has nothing to add",
        id="svm-entry-empty-key-servers",
    ),
    # -- key servers -------------------------------------------------------------------
    pytest.param(
        HEAD.replace("key_servers: [kms1.example.com]", "key_servers: [k1, k2, k3, k4, k5]  # <-")
        + ONE,
        "defaults.key_servers",
        "5 key servers: ONTAP allows at most 4 per key manager",
        id="more-than-4-primaries",
    ),
    pytest.param(
        HEAD.replace(
            "key_servers: [kms1.example.com]",
            "key_servers:\n    - server: k1\n      secondary_key_servers: [s1, s2, s3, s4]  # <-",
        )
        + ONE,
        "defaults.key_servers[0].secondary_key_servers",
        "4 secondary key servers: ONTAP allows at most 3 per key server",
        id="more-than-3-secondaries",
    ),
    pytest.param(
        HEAD.replace(
            "key_servers: [kms1.example.com]",
            "key_servers:\n    - KMS1.Example.com\n    - kms1.example.com:5696  # <-",
        )
        + ONE,
        "defaults.key_servers[1]",
        "kms1.example.com:5696 is listed twice (also at defaults.key_servers[0])",
        id="duplicate-primary-after-normalising",
    ),
    pytest.param(
        HEAD.replace(
            "key_servers: [kms1.example.com]",
            "key_servers:\n    - fd20::1\n    - '[fd20:0:0::1]:5696'  # <-",
        )
        + ONE,
        "defaults.key_servers[1]",
        "[fd20::1]:5696 is listed twice",
        id="duplicate-ipv6-after-normalising",
    ),
    pytest.param(
        HEAD.replace(
            "key_servers: [kms1.example.com]",
            "key_servers:\n    - server: kms1.example.com\n"
            "      secondary_key_servers:\n        - kms1.example.com:5696  # <-",
        )
        + ONE,
        "defaults.key_servers[0].secondary_key_servers[0]",
        "kms1.example.com:5696 is listed twice (also at defaults.key_servers[0].server)",
        id="secondary-equal-to-its-primary",
    ),
    pytest.param(
        HEAD.replace(
            "key_servers: [kms1.example.com]",
            "key_servers:\n    - kms2.example.com\n    - server: kms1.example.com\n"
            "      secondary_key_servers: [kms2.example.com]  # <-",
        )
        + ONE,
        "defaults.key_servers[1].secondary_key_servers[0]",
        "kms2.example.com:5696 is listed twice (also at defaults.key_servers[0])",
        id="secondary-equal-to-another-primary",
    ),
    pytest.param(
        HEAD.replace(
            "key_servers: [kms1.example.com]", "key_servers:\n    - server: kms://k1  # <-"
        )
        + ONE,
        "defaults.key_servers[0].server",
        "has a scheme: write the host (and port) only",
        id="server-with-scheme",
    ),
    pytest.param(
        HEAD.replace("key_servers: [kms1.example.com]", "key_servers:\n    - 'k1:port'  # <-")
        + ONE,
        "defaults.key_servers[0]",
        "not a valid key server: 'k1:port': port 'port' is not a number",
        id="server-bad-port",
    ),
    pytest.param(
        HEAD.replace(
            "key_servers: [kms1.example.com]",
            "key_servers:\n    - secondary_key_servers: [k2]  # <-",
        )
        + ONE,
        "defaults.key_servers[0].server",
        "server is required",
        id="server-mapping-without-server",
    ),
    pytest.param(
        HEAD.replace(
            "key_servers: [kms1.example.com]",
            "key_servers:\n    - server: k1\n      secondary_key_server: [k2]  # <-",
        )
        + ONE,
        "defaults.key_servers[0].secondary_key_server",
        "did you mean 'secondary_key_servers'?",
        id="server-mapping-unknown-key",
    ),
    pytest.param(
        HEAD.replace("key_servers: [kms1.example.com]", "key_servers: kms1.example.com  # <-")
        + ONE,
        "defaults.key_servers",
        "expected a list of key servers, got a string",
        id="key-servers-not-a-list",
    ),
    pytest.param(
        HEAD.replace("key_servers: [kms1.example.com]", "key_servers:\n    - 5696  # <-") + ONE,
        "defaults.key_servers[0]",
        "expected a key server name or a mapping with server:, got an integer",
        id="key-server-wrong-type",
    ),
    pytest.param(
        HEAD.replace(
            "key_servers: [kms1.example.com]",
            "key_servers:\n    - server: k1\n      secondary_key_servers: k2  # <-",
        )
        + ONE,
        "defaults.key_servers[0].secondary_key_servers",
        "expected a list of key server names, got a string",
        id="secondaries-not-a-list",
    ),
    # -- retire_servers ----------------------------------------------------------------
    pytest.param(
        HEAD + "  retire_servers: [o1, o2, o3, o4, o5]  # <-\n" + ONE,
        "defaults.retire_servers",
        "5 servers to retire: a key manager has at most 4 primary key servers",
        id="retire-more-than-4",
    ),
    pytest.param(
        HEAD + "  retire_servers:\n    - OLD.Example.com\n    - old.example.com:5696  # <-\n" + ONE,
        "defaults.retire_servers[1]",
        "old.example.com:5696 is listed twice (also at defaults.retire_servers[0])",
        id="retire-duplicate-after-normalising",
    ),
    pytest.param(
        HEAD + "groups:\n  g:\n    retire_servers:\n      - fd20::1\n"
        "      - '[fd20:0::1]:5696'  # <-\n" + ONE,
        "groups.g.retire_servers[1]",
        "[fd20::1]:5696 is listed twice (also at groups.g.retire_servers[0])",
        id="retire-duplicate-ipv6-in-a-group",
    ),
    pytest.param(
        HEAD + "  retire_servers:\n    - server: kms-old.example.com  # <-\n"
        "      secondary_key_servers: [kms-old-dr.example.com]\n" + ONE,
        "defaults.retire_servers[0]",
        "expected a key server name, got a mapping: write just the name 'kms-old.example.com' "
        "(retire_servers takes names only; a primary's secondary key servers are removed with it)",
        id="retire-long-form-refused",
    ),
    pytest.param(
        HEAD + "  retire_servers: kms-old.example.com  # <-\n" + ONE,
        "defaults.retire_servers",
        "expected a list of key server names to retire, got a string",
        id="retire-not-a-list",
    ),
    pytest.param(
        HEAD + "  retire_servers:\n    - 5696  # <-\n" + ONE,
        "defaults.retire_servers[0]",
        "expected a key server name (host or host:port), got an integer",
        id="retire-entry-not-a-string",
    ),
    pytest.param(
        HEAD + "  retire_servers:\n    - 'old:port'  # <-\n" + ONE,
        "defaults.retire_servers[0]",
        "not a valid key server: 'old:port': port 'port' is not a number",
        id="retire-bad-port",
    ),
    pytest.param(
        HEAD + "  retire_servers:\n    - kmip://old  # <-\n" + ONE,
        "defaults.retire_servers[0]",
        "has a scheme: write the host (and port) only",
        id="retire-with-scheme",
    ),
    pytest.param(
        HEAD + "  retire_server: [old]  # <-\n" + ONE,
        "defaults.retire_server",
        "unknown key 'retire_server'; did you mean 'retire_servers'?",
        id="retire-key-near-miss",
    ),
    pytest.param(
        HEAD + "retire_servers: [old]  # <-\n" + ONE,
        "retire_servers",
        "it belongs under 'defaults:' or in a cluster",
        id="retire-at-the-top",
    ),
    pytest.param(
        HEAD.replace(
            "key_servers: [kms1.example.com]",
            "key_servers:\n    - server: k1\n      retire_servers: [old]  # <-",
        )
        + ONE,
        "defaults.key_servers[0].retire_servers",
        "it belongs on the key manager, not in one of its key servers",
        id="retire-inside-a-key-server",
    ),
    pytest.param(
        HEAD + "clusters:\n  - name: c1\n    address: h1\n    svms:\n      - name: svm_a\n"
        "        retire_server: [old]  # <-\n",
        "clusters[0].svms[0].retire_server",
        "did you mean 'retire_servers'?",
        id="retire-key-near-miss-in-an-svm-entry",
    ),
    # -- a server both kept and retired on one key manager, after inheritance ---------
    pytest.param(
        HEAD + "  retire_servers: [KMS1.Example.com]  # <-\n"
        "clusters:\n  - {name: c1, address: h1, svms: all}\n"
        "  - {name: c2, address: h2, svms: [svm_a, 'app_*'], cluster_scope: true}\n",
        "defaults.retire_servers[0]",
        "kms1.example.com:5696 is both retired and desired: key_servers lists it at "
        "defaults.key_servers[0]; a key manager cannot keep and remove one server",
        id="kept-and-retired-in-defaults-reported-once",
    ),
    pytest.param(
        HEAD + "clusters:\n  - name: c1\n    address: h1\n    svms: all\n"
        "    retire_servers:\n      - old\n      - kms1.example.com:5696  # <-\n",
        "clusters[0].retire_servers[1]",
        "kms1.example.com:5696 is both retired and desired: key_servers lists it at "
        "defaults.key_servers[0]",
        id="cluster-retires-an-inherited-key-server",
    ),
    pytest.param(
        HEAD + "groups:\n  g:\n    retire_servers: [old1, new2]  # <-\n"
        "clusters:\n  - name: c1\n    address: h1\n    groups: [g]\n    svms:\n"
        "      - svm_a\n      - {name: svm_b, key_servers: [new1, new2]}\n",
        "groups.g.retire_servers[1]",
        "new2:5696 is both retired and desired: key_servers lists it at "
        "clusters[0].svms[1].key_servers[1]",
        id="group-retires-an-svm-entry-key-server",
    ),
    pytest.param(
        HEAD.replace(
            "key_servers: [kms1.example.com]",
            "key_servers:\n    - server: kms1.example.com\n"
            "      secondary_key_servers: [kms1-dr.example.com]",
        )
        + "clusters:\n  - name: c1\n    address: h1\n    svms:\n      - name: svm_a\n"
        "        retire_servers:\n          - kms1-dr.example.com  # <-\n",
        "clusters[0].svms[0].retire_servers[0]",
        "kms1-dr.example.com:5696 is retired but key_servers keeps it as a secondary of "
        "kms1.example.com:5696 at defaults.key_servers[0].secondary_key_servers[0]",
        id="svm-entry-retires-a-kept-secondary",
    ),
    pytest.param(
        HEAD + "  retire_servers: [kms9]  # <-\n"
        "clusters:\n  - {name: c1, address: h1, cluster_scope: true, key_servers: [kms9]}\n",
        "defaults.retire_servers[0]",
        "kms9:5696 is both retired and desired: key_servers lists it at clusters[0].key_servers[0]",
        id="cluster-scope-keeps-and-retires",
    ),
    # -- credentials -------------------------------------------------------------------
    pytest.param(
        HEAD.replace("username: admin", "username: 7  # <-") + ONE,
        "defaults.username",
        "expected a user name, got an integer",
        id="username-not-a-string",
    ),
    pytest.param(
        HEAD.replace("  username: admin\n", "")
        + "clusters:\n  - {name: c1, address: h1, svms: all}  # <-\n",
        "clusters[0].username",
        "no username: set username on the cluster, in one of its groups or in defaults",
        id="username-missing",
    ),
    pytest.param(
        HEAD.replace("  password: env:ONTAP_PASSWORD\n", "")
        + "clusters:\n  - {name: c1, address: h1, svms: all}  # <-\n",
        "clusters[0].password",
        "no password: set password on the cluster",
        id="password-missing",
    ),
    # -- limits ------------------------------------------------------------------------
    pytest.param(
        HEAD + "  limits:\n    concurrency: 0  # <-\n" + ONE,
        "defaults.limits.concurrency",
        "expected a whole number greater than 0 and at most 1000000, got 0",
        id="concurrency-zero",
    ),
    pytest.param(
        HEAD + "  limits:\n    concurrency: 2.5  # <-\n" + ONE,
        "defaults.limits.concurrency",
        "expected a whole number greater than 0 and at most 1000000, got 2.5",
        id="concurrency-fraction",
    ),
    pytest.param(
        HEAD + "  limits:\n    concurrency: true  # <-\n" + ONE,
        "defaults.limits.concurrency",
        "got a boolean",
        id="concurrency-boolean",
    ),
    pytest.param(
        HEAD + "  limits:\n    concurrency: '4'  # <-\n" + ONE,
        "defaults.limits.concurrency",
        "expected a whole number greater than 0, got a string",
        id="concurrency-string",
    ),
    pytest.param(
        HEAD + "  limits:\n    rate: -1  # <-\n" + ONE,
        "defaults.limits.rate",
        "expected a number greater than 0 and at most 1000000, got -1",
        id="rate-negative",
    ),
    pytest.param(
        HEAD + "  limits:\n    rate: yes  # <-\n" + ONE,
        "defaults.limits.rate",
        "got a boolean",
        id="rate-boolean",
    ),
    pytest.param(
        HEAD + "  limits:\n    rate: .inf  # <-\n" + ONE,
        "defaults.limits.rate",
        "expected a number greater than 0 and at most 1000000, got inf",
        id="rate-infinite",
    ),
    pytest.param(
        HEAD + "  limits:\n    timeout: .nan  # <-\n" + ONE,
        "defaults.limits.timeout",
        "expected a number greater than 0 and at most 1000000, got nan",
        id="timeout-nan",
    ),
    pytest.param(
        HEAD + "  limits:\n    timeout: 0  # <-\n" + ONE,
        "defaults.limits.timeout",
        "expected a number greater than 0 and at most 1000000, got 0",
        id="timeout-zero",
    ),
    pytest.param(
        HEAD + "  limits:\n    concurency: 2  # <-\n" + ONE,
        "defaults.limits.concurency",
        "did you mean 'concurrency'?",
        id="limits-unknown-key",
    ),
    pytest.param(
        HEAD + "  limits: 4  # <-\n" + ONE,
        "defaults.limits",
        "expected a mapping of limits, got an integer",
        id="limits-not-a-mapping",
    ),
    # -- tls (shape only; files are in test_tls) --------------------------------------
    pytest.param(
        HEAD + "  tls:\n    verify: nope  # <-\n" + ONE,
        "defaults.tls.verify",
        "expected true or false, got a string",
        id="verify-not-boolean",
    ),
    pytest.param(
        HEAD + "  tls:\n    ca: ca.pem  # <-\n" + ONE,
        "defaults.tls.ca",
        "unknown key 'ca'",
        id="tls-unknown-key",
    ),
    pytest.param(
        HEAD + "  tls: [ca.pem]  # <-\n" + ONE,
        "defaults.tls",
        "expected a mapping of TLS settings, got a list",
        id="tls-not-a-mapping",
    ),
    # -- groups and defaults -----------------------------------------------------------
    pytest.param(
        HEAD + "groups: [emea]  # <-\n" + ONE,
        "groups",
        "expected a mapping of group names to settings, got a list",
        id="groups-not-a-mapping",
    ),
    pytest.param(
        HEAD + "groups:\n  bad name: {}  # <-\n" + ONE,
        'groups["bad name"]',
        "'bad name' is not a valid group name",
        id="group-name-invalid",
    ),
    pytest.param(
        HEAD + "groups:\n  emea: 4  # <-\n" + ONE,
        "groups.emea",
        "expected a mapping of settings for group 'emea', got an integer",
        id="group-not-a-mapping",
    ),
    pytest.param(
        HEAD + "groups:\n  emea:\n    address: h9  # <-\n" + ONE,
        "groups.emea.address",
        "it belongs in a cluster entry (it is not inherited)",
        id="group-cluster-only-key",
    ),
    pytest.param(
        HEAD + "  name: everyone  # <-\n" + ONE,
        "defaults.name",
        "it belongs in a cluster entry (it is not inherited)",
        id="defaults-cluster-only-key",
    ),
    pytest.param(
        "version: 1\ndefaults: 3  # <-\n" + ONE,
        "defaults",
        "expected a mapping of settings for defaults, got an integer",
        id="defaults-not-a-mapping",
    ),
    # -- window: ----------------------------------------------------------------------
    pytest.param(
        windowed(DAYS, "start: 10:30  # <-", END, TZ),
        "clusters[0].window.start",
        'YAML reads an unquoted 10:30 as a number; quote the time: start: "10:30"',
        id="window-time-unquoted-read-as-minutes",
    ),
    pytest.param(
        windowed(DAYS, START, "end: 1:00  # <-", TZ),
        "clusters[0].window.end",
        'got the number 60: YAML reads an unquoted 1:00 as a number; quote the time: end: "01:00"',
        id="window-time-unquoted-unpadded",
    ),
    pytest.param(
        windowed(DAYS, "start: 12:30:00  # <-", END, TZ),
        "clusters[0].window.start",
        'expected a time of day in quotes (start: "01:00"), got an integer',
        id="window-time-unquoted-with-seconds",
    ),
    pytest.param(
        windowed(DAYS, START, 'end: "24:00"  # <-', TZ),
        "clusters[0].window.end",
        "'24:00' is not a time of day: write \"HH:MM\", 24-hour",
        id="window-time-24",
    ),
    pytest.param(
        windowed(DAYS, 'start: "1am"  # <-', END, TZ),
        "clusters[0].window.start",
        "'1am' is not a time of day",
        id="window-time-malformed",
    ),
    pytest.param(
        windowed(DAYS, "start: [1, 0]  # <-", END, TZ),
        "clusters[0].window.start",
        'expected a time of day in quotes (start: "01:00"), got a list',
        id="window-time-not-a-string",
    ),
    pytest.param(
        windowed(DAYS, 'start: "05:00"', 'end: "05:00"  # <-', TZ),
        "clusters[0].window.end",
        "end equals start (05:00)",
        id="window-end-equals-start",
    ),
    pytest.param(
        windowed(DAYS, START, END, header="window:  # <-"),
        "clusters[0].window.tz",
        "tz is required",
        id="window-tz-missing",
    ),
    pytest.param(
        windowed("day: [sat]  # <-", START, END, TZ),
        "clusters[0].window.day",
        "unknown key 'day'; did you mean 'days'?",
        id="window-key-near-miss-not-also-missing",
    ),
    pytest.param(
        windowed(DAYS, START, END, TZ, "dst: true  # <-"),
        "clusters[0].window.dst",
        "unknown key 'dst'; expected one of days, start, end, tz",
        id="window-unknown-key",
    ),
    pytest.param(
        HEAD + "clusters:\n  - name: c1\n    address: h1\n    svms: all\n"
        "    window: weekends  # <-\n",
        "clusters[0].window",
        "expected a window such as {days: [sat, sun]",
        id="window-not-a-mapping",
    ),
    pytest.param(
        windowed("days: []  # <-", START, END, TZ),
        "clusters[0].window.days",
        "the list of days is empty",
        id="window-days-empty",
    ),
    pytest.param(
        windowed("days: daily  # <-", START, END, TZ),
        "clusters[0].window.days",
        "expected a list of days such as [sat, sun] (every day: [mon, tue, wed, thu, fri, "
        "sat, sun]), got the string 'daily'",
        id="window-days-a-string",
    ),
    pytest.param(
        windowed("days:", "  - sat", "  - sunday  # <-", START, END, TZ),
        "clusters[0].window.days[1]",
        "'sunday' is not a day: write mon, tue, … or sun; did you mean 'sun'?",
        id="window-day-unknown",
    ),
    pytest.param(
        windowed("days:", "  - sat", "  - SAT  # <-", START, END, TZ),
        "clusters[0].window.days[1]",
        "'sat' is listed twice (also at clusters[0].window.days[0])",
        id="window-day-twice-in-any-case",
    ),
    pytest.param(
        windowed("days:", "  - 6  # <-", START, END, TZ),
        "clusters[0].window.days[0]",
        "expected a day (mon … sun), got an integer",
        id="window-day-not-a-name",
    ),
    pytest.param(
        windowed(DAYS, START, END, "tz: Europe/Pariss  # <-"),
        "clusters[0].window.tz",
        "unknown time zone 'Europe/Pariss': write an IANA name such as Europe/Paris; "
        "did you mean 'Europe/Paris'?",
        id="window-tz-unknown",
    ),
    pytest.param(
        windowed(DAYS, START, END, "tz: europe/paris  # <-"),
        "clusters[0].window.tz",
        "did you mean 'Europe/Paris'?",
        id="window-tz-wrong-case",
    ),
    pytest.param(
        windowed(DAYS, START, END, "tz: Europe  # <-"),
        "clusters[0].window.tz",
        "unknown time zone 'Europe'",
        id="window-tz-a-directory",
    ),
    pytest.param(
        windowed(DAYS, START, END, "tz: +01:00  # <-"),
        "clusters[0].window.tz",
        "unknown time zone '+01:00': write an IANA name such as Europe/Paris",
        id="window-tz-an-offset",
    ),
    pytest.param(
        windowed(DAYS, START, END, "tz: 1  # <-"),
        "clusters[0].window.tz",
        "expected an IANA time zone such as Europe/Paris, got an integer",
        id="window-tz-not-a-string",
    ),
    pytest.param(
        HEAD + '  window: {days: [sat], start: "01:00", end: "02:00", tz: Mars}  # <-\n' + ONE,
        "defaults.window.tz",
        "unknown time zone 'Mars'",
        id="window-in-defaults",
    ),
    pytest.param(
        HEAD + "groups:\n  prod:\n    window:\n      days: [sat]\n      start: 9:00  # <-\n"
        '      end: "10:00"\n      tz: UTC\n' + ONE,
        "groups.prod.window.start",
        'quote the time: start: "09:00"',
        id="window-in-a-group",
    ),
    pytest.param(
        HEAD + "window: {}  # <-\n" + ONE,
        "window",
        "it belongs under 'defaults:' or in a cluster",
        id="window-at-the-top",
    ),
    pytest.param(
        HEAD + "clusters:\n  - name: c1\n    address: h1\n    svms: all\n    tz: UTC  # <-\n",
        "clusters[0].tz",
        "it belongs under 'window:'",
        id="window-key-on-the-cluster",
    ),
    # -- wave: ------------------------------------------------------------------------
    pytest.param(
        HEAD + "  wave: 1  # <-\n" + ONE,
        "defaults.wave",
        "it belongs in a group or a cluster (in defaults it would pin every cluster",
        id="wave-in-defaults",
    ),
    pytest.param(
        HEAD + "clusters:\n  - name: c1\n    address: h1\n    svms: all\n    wave: 0  # <-\n",
        "clusters[0].wave",
        "expected a wave number from 1 (the first wave) to 1000, got 0",
        id="wave-zero",
    ),
    pytest.param(
        HEAD + "clusters:\n  - name: c1\n    address: h1\n    svms: all\n    wave: 1001  # <-\n",
        "clusters[0].wave",
        "to 1000, got 1001",
        id="wave-too-high",
    ),
    pytest.param(
        HEAD + "clusters:\n  - name: c1\n    address: h1\n    svms: all\n    wave: 1.5  # <-\n",
        "clusters[0].wave",
        "got a number",
        id="wave-not-whole",
    ),
    pytest.param(
        HEAD + "groups:\n  canary:\n    wave: true  # <-\n" + ONE,
        "groups.canary.wave",
        "expected a wave number from 1 (the first wave) to 1000, got a boolean",
        id="wave-boolean-in-a-group",
    ),
    pytest.param(
        HEAD + "wave: 1  # <-\n" + ONE,
        "wave",
        "it belongs in a group or a cluster",
        id="wave-at-the-top",
    ),
    # -- rollout: ---------------------------------------------------------------------
    pytest.param(
        HEAD + ONE + "rollout: fast  # <-\n",
        "rollout",
        "expected a mapping of rollout settings, got a string",
        id="rollout-not-a-mapping",
    ),
    pytest.param(
        HEAD + ONE + "rollout:\n  wave: [1]  # <-\n",
        "rollout.wave",
        "unknown key 'wave'; did you mean 'waves'?",
        id="rollout-unknown-key-near-miss",
    ),
    pytest.param(
        HEAD + ONE + "rollout:\n  window: {}  # <-\n",
        "rollout.window",
        "it belongs under 'defaults:', in a group or in a cluster",
        id="rollout-window-misplaced",
    ),
    pytest.param(
        HEAD + ONE + "rollout:\n  waves: 1,0%,100%  # <-\n",
        "rollout.waves",
        "wave size '0%' must be above 0% and at most 100%",
        id="rollout-waves-string-bad-size",
    ),
    pytest.param(
        HEAD + ONE + "rollout:\n  waves:\n    - 1\n    - ten  # <-\n    - 100%\n",
        "rollout.waves[1]",
        "wave size 'ten' is neither",
        id="rollout-waves-list-bad-item",
    ),
    pytest.param(
        HEAD + ONE + "rollout:\n  waves:\n    - true  # <-\n",
        "rollout.waves[0]",
        "wave size 'True' is neither",
        id="rollout-waves-boolean-item",
    ),
    pytest.param(
        HEAD + ONE + "rollout:\n  waves: []  # <-\n",
        "rollout.waves",
        "the list of waves is empty",
        id="rollout-waves-empty",
    ),
    pytest.param(
        HEAD + ONE + "rollout:\n  waves: 5  # <-\n",
        "rollout.waves",
        'expected a list of wave sizes (1, "10%") or a string such as "1,10%,100%", got an integer',
        id="rollout-waves-a-number",
    ),
    pytest.param(
        HEAD + ONE + "rollout:\n  wave_order: random  # <-\n",
        "rollout.wave_order",
        "wave order 'random' is not inventory, name or random:SEED",
        id="rollout-order-unknown",
    ),
    pytest.param(
        HEAD + ONE + "rollout:\n  wave_order: 42  # <-\n",
        "rollout.wave_order",
        "expected inventory, name or random:SEED, got an integer",
        id="rollout-order-not-a-string",
    ),
    pytest.param(
        HEAD + ONE + "rollout:\n  max_fail_percent: 150  # <-\n",
        "rollout.max_fail_percent",
        "expected a number from 0 to 100, got 150",
        id="rollout-percent-over-100",
    ),
    pytest.param(
        HEAD + ONE + "rollout:\n  max_fail_percent: 5%  # <-\n",
        "rollout.max_fail_percent",
        "write the number without '%': max_fail_percent: 5",
        id="rollout-percent-with-sign",
    ),
    pytest.param(
        HEAD + ONE + "rollout:\n  max_fail_percent: .nan  # <-\n",
        "rollout.max_fail_percent",
        "expected a number from 0 to 100, got nan",
        id="rollout-percent-nan",
    ),
    pytest.param(
        HEAD + ONE + "rollout:\n  max_failures: -1  # <-\n",
        "rollout.max_failures",
        "expected a whole number, 0 or more, got -1",
        id="rollout-failures-negative",
    ),
    pytest.param(
        HEAD + ONE + "rollout:\n  max_failures: 2.5  # <-\n",
        "rollout.max_failures",
        "expected a whole number, 0 or more, got a number",
        id="rollout-failures-not-whole",
    ),
    pytest.param(
        HEAD + ONE + "rollout:\n  max_failures: false  # <-\n",
        "rollout.max_failures",
        "got a boolean",
        id="rollout-failures-boolean",
    ),
    pytest.param(
        HEAD + ONE + "rollout:\n  pause_between_waves: -5  # <-\n",
        "rollout.pause_between_waves",
        "expected a number from 0 to 1000000, got -5",
        id="rollout-pause-negative",
    ),
    pytest.param(
        HEAD + ONE + "rollout:\n  pause_between_waves: .inf  # <-\n",
        "rollout.pause_between_waves",
        "got inf",
        id="rollout-pause-infinite",
    ),
    pytest.param(
        HEAD + ONE + "rollout:\n  pause_between_waves: 60s  # <-\n",
        "rollout.pause_between_waves",
        "expected a number from 0 to 1000000, got a string",
        id="rollout-pause-with-unit",
    ),
    pytest.param(
        HEAD + ONE + "waves: 1,100%  # <-\n",
        "waves",
        "it belongs under 'rollout:' at the top of the file",
        id="rollout-key-at-the-top",
    ),
    pytest.param(
        HEAD + "  max_failures: 3  # <-\n" + ONE,
        "defaults.max_failures",
        "it belongs under 'rollout:' at the top of the file",
        id="rollout-key-in-defaults",
    ),
    # -- YAML itself -------------------------------------------------------------------
    pytest.param(
        HEAD + "clusters:\n  - name: c1\n    address: h1\n    svms: all\n    address: h2  # <-\n",
        "clusters[0].address",
        "duplicate key 'address': a key may appear once in a mapping",
        id="duplicate-key",
    ),
    pytest.param(
        HEAD + "clusters: [{name: c1, address: h1, svms: all}]\n1: one  # <-\n",
        "1",
        "the key 1 is an integer; keys are names",
        id="key-not-a-string",
    ),
]


@pytest.mark.parametrize(("text", "key_path", "message"), CASES)
def test_each_mistake_is_one_problem_at_its_line_and_key_path(
    write: Write, text: str, key_path: str, message: str
) -> None:
    """A file with one mistake yields exactly that problem, with its line and key path."""
    path = write(text)
    problems = problems_of(path)
    assert [(p.key_path, p.line) for p in problems] == [(key_path, marked_line(text))], problems
    assert message in problems[0].message
    assert problems[0].file == str(path)


def test_every_retire_servers_mistake_is_reported_in_one_pass(write: Write) -> None:
    """Collisions (found after inheritance) come with the parser's problems, each at its line."""
    text = """\
        version: 1
        defaults:
          username: admin
          password: env:ONTAP_PASSWORD
          key_servers: [new1, new2]
          retire_servers: [old1, new1]          # collides (line 6)
        groups:
          g:
            retire_servers: [o1, o2, o3, o4, o5]  # too many (line 9)
        clusters:
          - name: c1
            address: h1
            groups: [g]
            svms:
              - name: svm_a
                retire_servers:
                  - old9
                  - OLD9:5696                   # twice (line 18)
              - name: svm_b
                retire_servers:
                  - {server: old1}              # long form (line 21)
          - name: c2
            address: h2
            svms: all
            limits: {concurrency: 0}            # not about retiring (line 25)
    """
    problems = problems_of(write(text))
    assert [(p.line, p.key_path) for p in problems] == [
        (6, "defaults.retire_servers[1]"),
        (9, "groups.g.retire_servers"),
        (18, "clusters[0].svms[0].retire_servers[1]"),
        (21, "clusters[0].svms[1].retire_servers[0]"),
        (25, "clusters[1].limits.concurrency"),
    ]
    assert "new1:5696 is both retired and desired" in problems[0].message
