"""The inventory attacked from the outside: typos at 2 a.m. and hostile files.

Each test is a mistake an operator made or a file someone crafted, checked the way the
operator meets it: rejected before anything is sent, with the file and line, and with
no secret in the message.
"""

from __future__ import annotations

import pytest

from tests.inventory.conftest import Write, problems_of

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
