"""The inventory attacked from the outside: typos at 2 a.m. and hostile files.

Each test is a mistake an operator made or a file someone crafted, checked the way the
operator meets it: rejected before anything is sent, with the file and line, and with
no secret in the message.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from bulkkm.errors import InventoryError
from bulkkm.inventory import inventory_schema
from tests.inventory.conftest import Write, load, problems_of

SECRET = "Lit3ral-pw-0009"


def _with_password(value: str) -> str:
    """An otherwise valid inventory whose default password is written as ``value``."""
    return (
        "version: 1\n"
        "allow_plaintext_secrets: true\n"
        "defaults:\n"
        "  username: admin\n"
        f"  password: {value}\n"
        "  key_servers: [kms1.example.com]\n"
        "clusters:\n"
        "  - {name: c1, address: 10.0.0.1, svms: all}\n"
    )


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(f"!!int {SECRET}", id="int-tag"),
        pytest.param(f"!!float {SECRET}", id="float-tag"),
        pytest.param(f"!!bool {SECRET}", id="bool-tag"),
        pytest.param(f"!!timestamp {SECRET}", id="timestamp-tag"),
        pytest.param("2024-02-30", id="impossible-date"),
        pytest.param("!!int 0x", id="int-tag-no-digits"),
    ],
)
def test_a_scalar_its_tag_or_form_cannot_build_is_a_problem_on_its_line(
    write: Write, value: str
) -> None:
    """A value YAML types but cannot build (``2024-02-30``, ``!!int x``) is no traceback."""
    problems = problems_of(write(_with_password(value)))
    assert [(p.line, p.message.startswith("invalid YAML: ")) for p in problems] == [(5, True)]
    assert SECRET not in problems[0].message


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(f"!{SECRET}", id="local-tag"),
        pytest.param(f"!!{SECRET}", id="yaml-tag"),
        pytest.param(f"!<tag:{SECRET}> x", id="verbatim-tag"),
    ],
)
def test_an_unknown_tag_is_refused_without_showing_it(write: Write, value: str) -> None:
    """A password written unquoted after ``!`` is a tag: the message must not repeat it."""
    problems = problems_of(write(_with_password(value)))
    assert [p.line for p in problems] == [5]
    assert SECRET not in problems[0].message
    assert "tag" in problems[0].message


def test_a_key_server_with_a_trailing_dot_is_the_same_server(write: Write) -> None:
    """``kms.example.com.`` (the FQDN) is ``kms.example.com``: kept and retired is refused."""
    path = write(
        """\
        version: 1
        defaults:
          username: admin
          password: env:ONTAP_PASSWORD
          key_servers: [KMS1.Example.COM.]
          retire_servers: [kms1.example.com]   # <-
        clusters:
          - {name: c1, address: 10.0.0.1, cluster_scope: true}
          - name: c2
            address: 10.0.0.2
            cluster_scope: true
            key_servers: [kms2.example.com, "kms2.example.com.:5696"]
            retire_servers: []
        """
    )
    problems = problems_of(path)
    assert [(p.line, p.key_path) for p in problems] == [
        (6, "defaults.retire_servers[0]"),
        (12, "clusters[1].key_servers[1]"),
    ]
    assert "both retired and desired" in problems[0].message
    assert "listed twice" in problems[1].message


def test_a_cluster_address_with_a_trailing_dot_is_the_same_address(write: Write) -> None:
    """``host.example.com.`` and ``host.example.com`` are one cluster listed twice."""
    path = write(
        """\
        version: 1
        defaults:
          username: admin
          password: env:ONTAP_PASSWORD
          key_servers: [kms1.example.com]
        clusters:
          - {name: c1, address: host.example.com, svms: all}
          - {name: c2, address: HOST.example.com., svms: all}
        """
    )
    assert [(p.line, p.key_path) for p in problems_of(path)] == [(8, "clusters[1].address")]


@pytest.mark.parametrize(
    "value",
    [
        pytest.param('"ENV:ONTAP_PASSWORD"', id="upper-case-env"),
        pytest.param('"Env:ONTAP_PASSWORD"', id="capitalised-env"),
        pytest.param('" env:ONTAP_PASSWORD"', id="leading-space"),
        pytest.param('"env :ONTAP_PASSWORD"', id="space-before-colon"),
        pytest.param('"FILE:secrets/ontap.txt"', id="upper-case-file"),
    ],
)
def test_a_mistyped_reference_is_not_taken_as_a_literal_password(write: Write, value: str) -> None:
    """With plaintext allowed, ``ENV:NAME`` is a typo, not the password ``ENV:NAME``."""
    problems = problems_of(write(_with_password(value)))
    assert [(p.line, p.key_path) for p in problems] == [(5, "defaults.password")]
    assert "reference" in problems[0].message


def _password_file_problems(write: Write, name: str) -> list[tuple[int | None, str]]:
    """The problems of an inventory whose password is ``file:NAME``."""
    path = write(_with_password(f"file:{name}").replace("allow_plaintext_secrets: true\n", ""))
    return [(p.line, p.message) for p in problems_of(path)]


@pytest.mark.timeout(20)
def test_a_password_file_that_is_a_named_pipe_is_refused_without_waiting(
    write: Write, tmp_path: Path
) -> None:
    """``file:`` naming a FIFO nobody writes is an error at once (it hung ``validate``)."""
    os.mkfifo(tmp_path / "pw.fifo")
    problems = _password_file_problems(write, "pw.fifo")
    assert len(problems) == 1
    assert problems[0][0] == 4
    assert "not a regular file" in problems[0][1]


@pytest.mark.parametrize("name", ["/dev/zero", "/dev/null"])
def test_a_password_file_that_is_a_device_is_refused(write: Write, name: str) -> None:
    """``file:/dev/zero`` is not 64 KiB of NUL characters for a password."""
    problems = _password_file_problems(write, name)
    assert len(problems) == 1
    assert "not a regular file" in problems[0][1]


def test_a_password_file_whose_first_line_is_too_long_is_refused(
    write: Write, tmp_path: Path
) -> None:
    """A first line over 64 KiB is not cut to a password silently (a wrong file, surely)."""
    (tmp_path / "pw.txt").write_bytes(b"x" * (64 * 1024 + 10) + b"\n")
    problems = _password_file_problems(write, "pw.txt")
    assert len(problems) == 1
    assert "longer than 64 KiB" in problems[0][1]


def test_a_password_file_of_exactly_its_limit_and_a_newline_is_read(
    write: Write, tmp_path: Path
) -> None:
    """The limit is on the line, not the file: 64 KiB and a newline, then more, loads."""
    (tmp_path / "pw.txt").write_bytes(b"x" * (64 * 1024) + b"\nsecond line\n")
    inventory = load(write(_with_password("file:pw.txt")))
    assert inventory.clusters[0].password is not None


def test_a_yaml_boolean_or_date_where_a_name_belongs_says_to_quote_it(write: Write) -> None:
    """``svms: [no]`` (Norway) and ``name: on`` read as booleans: the message says why."""
    path = write(
        """\
        version: 1
        defaults:
          username: admin
          password: env:ONTAP_PASSWORD
          key_servers: [kms1.example.com]
        clusters:
          - name: on                  # <-
            address: 10.0.0.1
            svms: [no, 2024-01-01]
        """
    )
    problems = problems_of(path)
    assert [(p.line, p.key_path) for p in problems] == [
        (7, "clusters[0].name"),
        (9, "clusters[0].svms[0]"),
        (9, "clusters[0].svms[1]"),
    ]
    assert all("quote" in p.message for p in problems), problems


def test_a_null_key_is_reported_at_its_own_line(write: Write) -> None:
    """``null:`` (or ``~:``) as a key is located at its line, not at its mapping's."""
    path = write(
        """\
        version: 1
        defaults:
          username: admin
          password: env:ONTAP_PASSWORD
          key_servers: [kms1.example.com]
        clusters:
          - name: c1
            address: 10.0.0.1
            svms: all
            ~: 3                      # <-
        """
    )
    assert [(p.line, p.key_path) for p in problems_of(path)] == [(10, "clusters[0].None")]


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("version: 1\ndefaults:\n\tusername: admin\n", id="tab-indent"),
        pytest.param("version: 1\n# café € 😀\nclusters:\n\t- name: c1\n", id="after-non-ascii"),
    ],
)
def test_a_tab_that_breaks_the_yaml_is_named(write: Write, text: str) -> None:
    """libyaml's "character that cannot start any token" is a tab: the message says so."""
    path = write("")
    path.write_text(text, encoding="utf-8")
    problems = problems_of(path)
    assert [p.line for p in problems] == [text.count("\n", 0, text.index("\t")) + 1]
    assert "a tab" in problems[0].message


def _schema_and_loader(write: Write, data: dict[str, object]) -> tuple[bool, bool]:
    """Whether ``bulkkm schema`` accepts ``data``, and whether the loader does."""
    jsonschema = pytest.importorskip("jsonschema")
    path = write(yaml.safe_dump(data))
    schema_ok = jsonschema.Draft202012Validator(inventory_schema()).is_valid(data)
    try:
        load(path)
    except InventoryError:
        return schema_ok, False
    return schema_ok, True


def _one_cluster(**cluster: object) -> dict[str, object]:
    """A valid inventory of one cluster, its keys replaced by ``cluster``."""
    return {
        "version": 1,
        "defaults": {
            "username": "admin",
            "password": "env:ONTAP_PASSWORD",
            "key_servers": ["kms1.example.com"],
        },
        "clusters": [{"name": "c1", "address": "10.0.0.1", "svms": "all", **cluster}],
    }


@pytest.mark.parametrize(
    ("cluster", "accepted"),
    [
        pytest.param({"exclude_svms": ["all"]}, False, id="exclude-all"),
        pytest.param({"exclude_svms": ["[a]ll"]}, True, id="exclude-an-svm-named-all"),
        pytest.param({"address": " 10.0.0.1 "}, True, id="address-with-blanks"),
        pytest.param({"key_servers": [" kms2.example.com"]}, True, id="server-with-blanks"),
    ],
)
def test_the_schema_and_the_loader_agree(
    write: Write, cluster: dict[str, object], accepted: bool
) -> None:
    """An editor's schema check and ``validate`` give one answer for these files."""
    assert _schema_and_loader(write, _one_cluster(**cluster)) == (accepted, accepted)
