"""Password references: resolved up front, once each, and never shown."""

from __future__ import annotations

import pathlib
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from bulkkm.errors import InventoryError
from bulkkm.inventory import describe, load_inventory
from bulkkm.secret import Secret
from tests.inventory.conftest import ENV, Write, load, marked_line, problems_of

HEAD = """\
version: 1
defaults:
  username: admin
  password: env:ONTAP_PASSWORD
  key_servers: [kms1.example.com]
"""


class CountingEnviron(Mapping[str, str]):
    """An environment that counts the lookups of each variable."""

    def __init__(self, values: Mapping[str, str]) -> None:
        """Serve ``values``."""
        self._values = dict(values)
        self.lookups: Counter[str] = Counter()

    def __getitem__(self, name: str) -> str:
        """Count, then look up."""
        self.lookups[name] += 1
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        """The names."""
        return iter(self._values)

    def __len__(self) -> int:
        """How many."""
        return len(self._values)


def test_env_and_file_references_resolve_to_secrets(write: Write) -> None:
    """``env:`` reads the variable; ``file:`` the first line of a file beside the inventory."""
    write("s3cret-from-file\r\nsecond line is ignored\n", "secrets/kmip.txt")
    text = (
        HEAD.replace(
            "key_servers: [kms1.example.com]",
            "key_servers:\n    - {server: k1, password: 'file:secrets/kmip.txt'}",
        )
        + "clusters: [{name: c1, address: h1, svms: all}]\n"
    )
    cluster = load(write(text)).clusters[0]
    assert cluster.password == Secret(ENV["ONTAP_PASSWORD"], source="env:ONTAP_PASSWORD")
    assert cluster.password is not None
    assert cluster.password.source == "env:ONTAP_PASSWORD"
    kmip = cluster.svms[0].key_servers[0].password
    assert kmip is not None
    assert (kmip.reveal(), kmip.source) == ("s3cret-from-file", "file:secrets/kmip.txt")


@pytest.mark.parametrize(
    ("text", "key_path", "message"),
    [
        pytest.param(
            HEAD.replace("env:ONTAP_PASSWORD", "hunter2-literal  # <-")
            + "clusters: [{name: c1, address: h1, svms: all}]\n",
            "defaults.password",
            "a literal password is refused: write env:NAME or file:PATH "
            "(or set allow_plaintext_secrets: true)",
            id="literal-cluster-password",
        ),
        pytest.param(
            HEAD.replace(
                "key_servers: [kms1.example.com]",
                "key_servers:\n    - server: k1\n      password: hunter2-literal  # <-",
            )
            + "clusters: [{name: c1, address: h1, svms: all}]\n",
            "defaults.key_servers[0].password",
            "a literal password is refused",
            id="literal-kmip-password",
        ),
        pytest.param(
            HEAD + "clusters:\n  - {name: c1, address: h1, svms: all, password: 123456}  # <-\n",
            "clusters[0].password",
            "expected a secret reference (env:NAME or file:PATH), got an integer",
            id="password-not-a-string",
        ),
        pytest.param(
            HEAD.replace("env:ONTAP_PASSWORD", "'env:1BAD'  # <-")
            + "clusters: [{name: c1, address: h1, svms: all}]\n",
            "defaults.password",
            "env: needs an environment variable name",
            id="env-bad-name",
        ),
        pytest.param(
            HEAD.replace("env:ONTAP_PASSWORD", "'file:'  # <-")
            + "clusters: [{name: c1, address: h1, svms: all}]\n",
            "defaults.password",
            "file: needs a path",
            id="file-without-path",
        ),
        pytest.param(
            HEAD.replace("env:ONTAP_PASSWORD", "env:NOT_SET  # <-")
            + "clusters: [{name: c1, address: h1, svms: all}]\n",
            "defaults.password",
            "environment variable NOT_SET is not set (needed by cluster c1)",
            id="env-not-set",
        ),
        pytest.param(
            HEAD.replace("env:ONTAP_PASSWORD", "env:EMPTY  # <-")
            + "clusters: [{name: c1, address: h1, svms: all}]\n",
            "defaults.password",
            "environment variable EMPTY is empty (needed by cluster c1)",
            id="env-empty",
        ),
        pytest.param(
            HEAD.replace("env:ONTAP_PASSWORD", "file:nowhere.txt  # <-")
            + "clusters: [{name: c1, address: h1, svms: all}]\n",
            "defaults.password",
            "cannot read the password file 'nowhere.txt': No such file or directory "
            "(needed by cluster c1)",
            id="file-missing",
        ),
        pytest.param(
            HEAD.replace("env:ONTAP_PASSWORD", "file:empty.txt  # <-")
            + "clusters: [{name: c1, address: h1, svms: all}]\n",
            "defaults.password",
            "the password file 'empty.txt' is empty",
            id="file-empty",
        ),
        pytest.param(
            HEAD.replace(
                "key_servers: [kms1.example.com]",
                "key_servers:\n    - server: k1\n      password: env:NO_KMIP  # <-",
            )
            + "clusters: [{name: c1, address: h1, svms: all}]\n",
            "defaults.key_servers[0].password",
            "environment variable NO_KMIP is not set (needed by cluster c1)",
            id="kmip-env-not-set",
        ),
    ],
)
def test_bad_secrets_are_reported_at_their_key_path(
    write: Write, text: str, key_path: str, message: str
) -> None:
    """A refused literal or an unresolvable reference is a problem where it was written."""
    write("", "empty.txt")
    problems = problems_of(write(text))
    assert [(p.key_path, p.line) for p in problems] == [(key_path, marked_line(text))]
    assert problems[0].message.startswith(message)
    assert "hunter2" not in str(problems[0])


def test_a_missing_variable_names_the_clusters_that_need_it(write: Write) -> None:
    """One problem per reference, naming a few of the clusters that use it and a count."""
    clusters = "".join(f"  - {{name: c{i}, address: h{i}, svms: all}}\n" for i in range(6))
    text = HEAD.replace("env:ONTAP_PASSWORD", "env:NOT_SET") + "clusters:\n" + clusters
    (problem,) = problems_of(write(text))
    assert problem.message == (
        "environment variable NOT_SET is not set (needed by clusters c0, c1, c2 and 3 more)"
    )


def test_literals_are_allowed_when_the_file_says_so_with_a_warning(write: Write) -> None:
    """``allow_plaintext_secrets: true`` wraps literals in a Secret and warns where they are."""
    text = (
        "allow_plaintext_secrets: true\n"
        + HEAD.replace("env:ONTAP_PASSWORD", "lab-password")
        + "clusters: [{name: c1, address: h1, svms: all}]\n"
    )
    inventory = load(write(text))
    password = inventory.clusters[0].password
    assert password is not None
    assert (password.reveal(), password.source) == ("lab-password", "literal")
    assert inventory.warnings == (
        "allow_plaintext_secrets is true and passwords are written in the file (defaults.password)",
    )


def test_each_reference_is_resolved_once_per_load(
    write: Write, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many clusters sharing references cost one variable lookup and one file read each."""
    write("kmip-from-file\n", "kmip.txt")
    text = (
        HEAD.replace(
            "key_servers: [kms1.example.com]",
            "key_servers:\n    - {server: k1, password: 'file:kmip.txt'}\n"
            "    - {server: k2, password: 'env:KMIP_PASSWORD'}",
        )
        + "groups: {g: {password: env:ONTAP_EMEA_PASSWORD}}\nclusters:\n"
        + "".join(
            f"  - {{name: c{i}, address: h{i}, svms: [svm_a, 'b*'], groups: [g], "
            f"key_servers: [{{server: k9, password: 'file:kmip.txt'}}], cluster_scope: true}}\n"
            if i % 2
            else f"  - {{name: c{i}, address: h{i}, svms: all}}\n"
            for i in range(20)
        )
    )
    opened: Counter[str] = Counter()
    real_open = pathlib.Path.open

    def counting_open(self: Path, *args: Any, **kwargs: Any) -> Any:
        """Count opens by file name."""
        opened[self.name] += 1
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "open", counting_open)
    environ = CountingEnviron(ENV)
    inventory = load_inventory(write(text), environ=environ)
    assert len(inventory.clusters) == 20
    assert opened["kmip.txt"] == 1
    assert environ.lookups == {"ONTAP_PASSWORD": 1, "ONTAP_EMEA_PASSWORD": 1, "KMIP_PASSWORD": 1}


def test_no_secret_value_shows_in_repr_str_describe_or_problems(write: Write) -> None:
    """Secrets appear in no repr, str, describe line or problem text."""
    literal = "literal-kmip-value-42"
    text = (
        "allow_plaintext_secrets: true\n"
        + HEAD.replace(
            "key_servers: [kms1.example.com]",
            f"key_servers:\n    - {{server: k1, password: {literal}}}\n"
            "    - {server: k2, password: env:KMIP_PASSWORD}",
        )
        + "clusters: [{name: c1, address: h1, svms: all, cluster_scope: true}]\n"
    )
    inventory = load(write(text))
    values = [*ENV.values(), literal]
    shown = "\n".join(
        [repr(inventory), str(inventory), *describe(inventory), *map(repr, inventory.clusters)]
    )
    assert [v for v in values if v and v in shown] == []

    broken = text.replace("version: 1", "version: 1\nbogus: 1").replace(
        "allow_plaintext_secrets: true", "allow_plaintext_secrets: false"
    )
    with pytest.raises(InventoryError) as info:
        load(write(broken, "broken.yaml"))
    texts = [str(info.value), *map(str, info.value.problems), *map(repr, info.value.problems)]
    assert len(info.value.problems) == 2
    assert [t for t in texts if literal in t] == []
