"""Redaction: every form a server can echo a secret in is masked, and nothing else is touched."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bulkkm import secret
from bulkkm.secret import redact, remember
from tests.hostile._server import encoded_forms

MASK = "********"
LONG = 'Lo"ng\\pw/é+ :=\x1b[0m%41🔑'
SHORT = 'k"/é'


@pytest.fixture(autouse=True)
def no_known_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no remembered secret and leaves none behind."""
    monkeypatch.setattr(secret, "_KNOWN", set())


def remember_as_client(password: str, user: str = "admin") -> None:
    """Remember a password as a run does: the value, and the basic-auth token made of it."""
    remember(password)
    remember(base64.b64encode(f"{user}:{password}".encode()).decode())


@pytest.mark.parametrize("password", [LONG, SHORT], ids=["long", "short"])
def test_every_encoded_form_is_masked(password: str) -> None:
    """As written, JSON-escaped, URL-encoded, control characters replaced, base64: masked."""
    remember_as_client(password)
    for form in encoded_forms(password):
        masked = redact(f"Invalid input: {form} (rejected)")
        assert masked == f"Invalid input: {MASK} (rejected)", form


def test_base64_of_a_long_secret_is_masked_whatever_comes_before_it() -> None:
    """``user:password`` in base64 is masked whole for any user, the token never remembered."""
    remember(LONG)
    for user in ("a", "ab", "abc", "operator"):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            token = encode(f"{user}:{LONG}:trailer".encode()).decode()
            assert redact(f"Basic {token}.") == f"Basic {MASK}."


def test_short_secret_is_masked_only_where_it_stands_alone() -> None:
    """A one-letter password is masked as a whole token, never inside a run of letters or
    digits: ``target_blocked`` stays as it is; a long secret is masked even inside a word."""
    remember("k")
    remember("Correct-Horse-9")
    cases = {
        "target_blocked": "target_blocked",
        "kms-new.example.com:5696": "kms-new.example.com:5696",
        "lookup 5k items": "lookup 5k items",
        "password k was refused": f"password {MASK} was refused",
        "got 'k'": f"got '{MASK}'",
        "k": MASK,
        "user=admin&pw=k": f"user=admin&pw={MASK}",
        "target_k": f"target_{MASK}",
        "prefixCorrect-Horse-9suffix": f"prefix{MASK}suffix",
    }
    assert {text: redact(text) for text in cases} == cases


def test_overlapping_secrets_leave_no_fragment_of_either() -> None:
    """Two secrets sharing characters in the text: the mask covers both, whatever the order."""
    remember("alpha-bravo-1234")
    remember("1234-charlie-delta")
    assert redact("x alpha-bravo-1234-charlie-delta y") == f"x {MASK} y"


def test_mask_does_not_depend_on_the_secret() -> None:
    """Secrets of different lengths and forms leave the same mask: nothing to measure."""
    remember_as_client(LONG)
    remember_as_client("another-password")
    masked = {
        redact(f"<{form}>") for pw in (LONG, "another-password") for form in encoded_forms(pw)
    }
    assert masked == {f"<{MASK}>"}


SEPARATORS = (" ", "|", ",", ";", "\n")


@given(
    password=st.text(min_size=1, max_size=24).filter(lambda s: "*" not in s),
    before=st.text(max_size=40),
    after=st.text(max_size=40),
)
def test_no_encoded_form_survives_redaction(password: str, before: str, after: str) -> None:
    """Random secrets in random text: not one encoded form of the secret is left."""
    secret._KNOWN = set()  # type: ignore[misc]  # the fixture runs once for all examples
    if len(password) < 8:  # a long one must be found in base64 without the token's help
        remember_as_client(password)
    else:
        remember(password)
    for form in encoded_forms(password):
        separator = next((s for s in SEPARATORS if s not in form), None)
        if separator is None or form in before or form in after:
            continue  # the form would not be the only one in the text
        out = redact(f"{before}{separator}{form}{separator}{after}")
        assert form not in out


def test_a_very_long_secret_is_masked_and_masking_goes_on() -> None:
    """A password file of 64 KiB (a token, a key pasted by mistake): masked wherever it
    appears, in every form, and the other secrets with it. Its length once made every
    redaction of the process fail (a recursion as deep as the secret was long)."""
    long = "k" * 30_000 + "-tail-" + "q" * 35_536
    remember(long)
    remember("hunter2-not-a-real-one")
    text = f"a {long} b {base64.b64encode(long.encode()).decode()} c hunter2-not-a-real-one d"
    assert redact(text) == f"a {MASK} b {MASK} c {MASK} d"
