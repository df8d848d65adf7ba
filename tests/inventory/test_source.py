"""Reading the file: YAML and TOML, whole-file errors, line numbers, digest and path."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import yaml

from bulkkm.inventory import load_inventory
from bulkkm.inventory._yaml import parse_yaml
from tests.inventory.conftest import ENV, Write, load, marked_line, problems_of

VALID = """\
version: 1
defaults:
  username: admin
  password: env:ONTAP_PASSWORD
  key_servers: [kms1.example.com]
clusters:
  - {name: c1, address: h1, svms: all}
"""


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        pytest.param(
            "version: 1\nclusters:\n  - name: c1\n   address: h1\n",
            4,
            "invalid YAML: ",
            id="bad-indentation",
        ),
        pytest.param(
            'version: 1\nclusters:\n  - name: "c1\n', 3, "invalid YAML: ", id="unclosed-quote"
        ),
        pytest.param(
            "version: 1\n? [a, b]\n: value\n",
            2,
            "invalid YAML: while constructing a mapping, found a key that is a list or a mapping",
            id="key-is-a-list",
        ),
        pytest.param(
            "version: 1\n---\nversion: 1\n",
            2,
            "invalid YAML: expected a single document",
            id="two-documents",
        ),
        pytest.param(
            "version: 1\nclusters: !!python/object:os.system {}\n",
            2,
            "invalid YAML: could not determine a constructor",
            id="unsafe-tag",
        ),
    ],
)
def test_invalid_yaml_is_one_problem_with_its_line(
    write: Write, text: str, line: int, message: str
) -> None:
    """A file that is not YAML gives a single problem: the parser's complaint and its line."""
    problems = problems_of(write(text))
    assert len(problems) == 1
    assert (problems[0].line, problems[0].key_path) == (line, "")
    assert problems[0].message.startswith(message)


def test_yaml_error_message_does_not_quote_the_offending_line(write: Write) -> None:
    """The snippet PyYAML shows under its errors is left out: it could hold a password."""
    text = "version: 1\ndefaults:\n  password: 'hunter2-in-a-broken-line\n"
    problems = problems_of(write(text))
    assert [p.message for p in problems] == [
        "invalid YAML: while scanning a quoted scalar, found unexpected end of stream"
    ]
    assert "hunter2" not in str(problems[0])


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        pytest.param("fleet.yaml", b"", "the file is empty", id="empty"),
        pytest.param("fleet.yaml", b"\n  \n", "the file is empty", id="blank"),
        pytest.param("fleet.yaml", b"# only a comment\n", "the file is empty", id="comments"),
        pytest.param("fleet.toml", b"# only a comment\n", "the file is empty", id="toml-comments"),
        pytest.param("fleet.yaml", b"\xff\xfeversion", "the file is not UTF-8 text", id="not-utf8"),
    ],
)
def test_whole_file_problems_are_single(
    tmp_path: Path, name: str, content: bytes, message: str
) -> None:
    """An empty or undecodable file gives exactly one problem, about the whole file."""
    path = tmp_path / name
    path.write_bytes(content)
    problems = problems_of(path)
    assert [(p.key_path, p.message) for p in problems] == [("", message)]


@pytest.mark.parametrize(
    ("text", "got"),
    [
        pytest.param("- version: 1\n", "a list", id="list"),
        pytest.param("just words\n", "a string", id="scalar"),
        pytest.param("42\n", "an integer", id="number"),
    ],
)
def test_a_file_that_is_not_a_mapping_is_one_problem(write: Write, text: str, got: str) -> None:
    """The top of the file must be a mapping; anything else is one problem naming what it is."""
    problems = problems_of(write(text))
    assert len(problems) == 1
    assert problems[0].message == (
        f"expected a mapping at the top (version: 1, clusters: ...), got {got}"
    )


def test_a_missing_file_is_one_problem(tmp_path: Path) -> None:
    """A path that does not exist gives one problem, with the reason, and no line."""
    problems = problems_of(tmp_path / "nope.yaml")
    assert [(p.line, p.message) for p in problems] == [
        (None, "cannot read the file: No such file or directory")
    ]


def test_a_directory_is_one_problem(tmp_path: Path) -> None:
    """A directory given as the inventory gives one problem."""
    problems = problems_of(tmp_path)
    assert len(problems) == 1
    assert problems[0].message.startswith("cannot read the file: ")


def test_every_duplicate_key_is_reported_at_its_repeat(write: Write) -> None:
    """Each key written twice in one mapping is a problem at the line of the repeat."""
    text = """\
        version: 1
        defaults:
          username: admin
          password: env:ONTAP_PASSWORD
          key_servers: [kms1.example.com]
          username: root
        clusters:
          - name: c1
            address: h1
            svms: all
            svms: all
    """
    problems = problems_of(write(text))
    assert [(p.key_path, p.line) for p in problems] == [
        ("defaults.username", 6),
        ("clusters[0].svms", 11),
    ]


def test_merge_keys_are_not_duplicates_and_own_keys_win(write: Write) -> None:
    """``<<: *anchor`` merges a mapping; keys written next to it override the merged ones."""
    text = """\
        version: 1
        defaults:
          username: admin
          password: env:ONTAP_PASSWORD
          key_servers: [kms1.example.com]
          limits: &slow {concurrency: 1, timeout: 90}
        clusters:
          - name: c1
            address: h1
            svms: all
            limits:
              <<: *slow
              concurrency: 3
    """
    inventory = load(write(text))
    limits = inventory.clusters[0].limits
    assert (limits.concurrency, limits.timeout) == (3, 90.0)


def test_problem_lines_inside_a_merged_mapping_point_at_the_anchor(write: Write) -> None:
    """A bad value brought in by a merge key is located where it was written."""
    text = """\
        version: 1
        x-base: &base
          concurrency: 0  # <-
        defaults:
          username: admin
          password: env:ONTAP_PASSWORD
          key_servers: [kms1.example.com]
          limits: {<<: *base}
        clusters:
          - {name: c1, address: h1, svms: all}
    """
    problems = problems_of(write(text))
    assert ("defaults.limits.concurrency", marked_line(text)) in [
        (p.key_path, p.line) for p in problems
    ]


def test_problems_come_sorted_by_line(write: Write) -> None:
    """Problems are listed in file order, whatever order the checks found them in."""
    text = """\
        version: 1
        defaults:
          username: admin
          password: env:MISSING_ONE
          key_servers: [kms1.example.com]
        clusters:
          - {name: c1, address: 'https://h1', svms: all}
          - {name: c2, address: h2, svms: [bad name]}
    """
    lines = [p.line for p in problems_of(write(text))]
    assert lines == sorted(line for line in lines if line is not None)
    assert len(lines) == 3


def test_inventory_keeps_the_path_as_given_and_the_digest_of_the_bytes(
    write: Write, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``Inventory.path`` is the path passed in (relative stays relative); sha256 of the bytes."""
    path = write(VALID)
    monkeypatch.chdir(path.parent)
    inventory = load_inventory(Path("fleet.yaml"), environ=ENV)
    assert inventory.path == Path("fleet.yaml")
    assert inventory.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_problems_name_the_file_as_given(write: Write, monkeypatch: pytest.MonkeyPatch) -> None:
    """``Problem.file`` is the path as the user typed it."""
    path = write(VALID.replace("version: 1", "version: 9"))
    monkeypatch.chdir(path.parent)
    problems = problems_of(Path("fleet.yaml"))
    assert problems[0].file == "fleet.yaml"
    assert (
        str(problems[0])
        == "fleet.yaml:1: version: unsupported version 9: this bulkkm reads version 1"
    )


def test_yml_suffix_is_yaml_and_toml_suffix_is_case_insensitive(write: Write) -> None:
    """``.yml`` reads as YAML; ``.TOML`` as TOML."""
    assert load(write(VALID, "fleet.yml")).clusters[0].name == "c1"
    toml = """\
        version = 1
        [defaults]
        username = "admin"
        password = "env:ONTAP_PASSWORD"
        key_servers = ["kms1.example.com"]
        [[clusters]]
        name = "c1"
        address = "h1"
        svms = "all"
    """
    assert load(write(toml, "fleet.TOML")).clusters[0].name == "c1"


TOML = """\
version = 1

[defaults]
username = "admin"
password = "env:ONTAP_PASSWORD"
key_servers = ["kms1.example.com"]

[defaults.limits]
concurrency = 4
rate = 0

[[clusters]]
name = "c1"
address = "h1"
svms = "all"

[[clusters]]
name = "c2"
address = "https://h2"
svms = ["svm_a", { name = "bad name" }]
"""


def test_toml_problems_get_the_line_of_their_key_where_the_text_shows_it(write: Write) -> None:
    """TOML has no positions; a scan of headers and ``key =`` lines finds them (best effort)."""
    problems = problems_of(write(TOML, "fleet.toml"))
    assert [(p.key_path, p.line) for p in problems] == [
        ("defaults.limits.rate", 10),
        ("clusters[1].address", 19),
        # Inside an inline array the scan cannot see the item: the array's line it is.
        ("clusters[1].svms[1].name", 20),
    ]


def test_invalid_toml_is_one_problem_with_its_line(write: Write) -> None:
    """A TOML syntax error is one problem with the line tomllib names."""
    problems = problems_of(write('version = 1\nclusters = "a"\nclusters = "b"\n', "fleet.toml"))
    assert [(p.line, p.key_path) for p in problems] == [(3, "")]
    assert problems[0].message.startswith("invalid TOML: ")


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(
            "a: 1\nb: 1.5\nc: true\nd: ~\ne: ''\nf: 2001-12-14\ng: 0x1F\nh: on\ni: No\n"
            "j: '1'\nk: \"yes\"\nl: .inf\nm: 1:20\nn: -1_000\n",
            id="scalars",
        ),
        pytest.param("base: &b {x: 1, y: 2}\nc: {<<: *b, y: 3}\nd: [*b, *b]\n", id="anchors"),
        pytest.param("m: {<<: [{a: 1}, {a: 2, b: 3}], c: 4}\n", id="merge-list"),
        pytest.param(
            "s: !!set {a, b}\no: !!omap [a: 1]\nb: !!binary aGk=\nt: !!str 12\ni: !!int '7'\n",
            id="explicit-tags",
        ),
        pytest.param("? !!int 1\n: one\n[a]: 2\n", id="odd-keys"),
        pytest.param("k: [a, 'b', \"c\", 10, -5, ., ...x, -, '']\n", id="lists"),
    ],
)
def test_values_read_exactly_as_safe_load_reads_them(text: str) -> None:
    """The line-keeping loader builds the very values ``yaml.safe_load`` does."""
    try:
        expected: object = yaml.safe_load(text)
    except yaml.YAMLError:
        with pytest.raises(yaml.YAMLError):
            parse_yaml(text)
        return
    assert repr(parse_yaml(text).data) == repr(expected)
