"""The retry policy (pure): classification, the predicate's waits, Retry-After, Cryptsoft."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bulkkm.errors import (
    ApiError,
    AuthError,
    ErrorCategory,
    OntapError,
    ProtocolError,
    RequestTimeout,
    TlsError,
    TransportError,
    WriteRefused,
)
from bulkkm.retry import (
    KMIP_CRYPTSOFT,
    MAX_RETRY_AFTER,
    RetryOn,
    classify,
    parse_retry_after,
    refused,
)

NOW = datetime(2026, 11, 27, 10, 0, 0, tzinfo=UTC)


def api_error(code: str | None, status: int = 400, retry_after: float | None = None) -> ApiError:
    """An ONTAP error answer, classified as the client classifies it."""
    return ApiError(
        "nope",
        cluster="c1",
        code=code,
        http_status=status,
        category=classify(code, status),
        retry_after=retry_after,
        sent=True,
    )


@pytest.mark.parametrize(
    ("code", "status", "category"),
    [
        (None, 401, ErrorCategory.AUTH),
        ("65536870", 403, ErrorCategory.AUTH),
        (None, 429, ErrorCategory.TRANSIENT),
        ("65536038", 400, ErrorCategory.PRECONDITION),
        ("65536870", 400, ErrorCategory.PERMANENT),
        ("2621573", 400, ErrorCategory.TRANSIENT),
        ("66060338", 400, ErrorCategory.TLS),
        (KMIP_CRYPTSOFT, 400, ErrorCategory.TRANSIENT),
        ("999", 503, ErrorCategory.TRANSIENT),
        ("999", 400, ErrorCategory.PERMANENT),
        (None, None, ErrorCategory.PERMANENT),
    ],
)
def test_classify_follows_the_table_then_the_status(
    code: str | None, status: int | None, category: ErrorCategory
) -> None:
    """Credentials first, a 429 is throttling, then ONTAP's code, then 5xx vs 4xx."""
    assert classify(code, status) is category


@pytest.mark.parametrize(
    ("exc", "proves_refusal"),
    [
        (TransportError("refused", cluster="c", sent=False), True),
        (TransportError("reset", cluster="c", sent=True), False),
        (RequestTimeout("late", cluster="c", sent=True), False),
        (TlsError("bad cert", cluster="c"), True),
        (AuthError("401", cluster="c"), True),
        (WriteRefused("read only", cluster="c"), True),
        (ProtocolError("odd", cluster="c", sent=True), False),
        (api_error("65536038"), True),
        (api_error(None, 429), False),
        (api_error(None, 500), False),
    ],
)
def test_refused_only_when_the_answer_proves_nothing_applied(
    exc: OntapError, *, proves_refusal: bool
) -> None:
    """A 429 or a 5xx without a known code leaves a write's fate unknown."""
    assert refused(exc) is proves_refusal


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("7", 7.0),
        (" 0 ", 0.0),
        ("3600", MAX_RETRY_AFTER),
        ("9" * 5000, MAX_RETRY_AFTER),
        ("Fri, 27 Nov 2026 10:00:30 GMT", 30.0),
        ("Fri, 27 Nov 2026 09:59:00 GMT", 0.0),
        ("Sat, 28 Nov 2026 10:00:00 GMT", MAX_RETRY_AFTER),
        ("-5", None),
        ("1.5", None),
        ("soon", None),
        ("", None),
        ("²", None),
        (None, None),
    ],
)
def test_retry_after_is_seconds_or_a_date_bounded(
    header: str | None, seconds: float | None
) -> None:
    """Delay-seconds or an HTTP date, within [0, MAX_RETRY_AFTER]; anything else is None."""
    assert parse_retry_after(header, now=NOW) == seconds


def test_retry_after_date_is_measured_from_now() -> None:
    """Without ``now``, a date is measured from the clock (a date well ahead: the bound)."""
    ahead = (datetime.now(UTC) + timedelta(hours=1)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert parse_retry_after(ahead) == MAX_RETRY_AFTER


@pytest.mark.parametrize(
    ("exc", "verdict"),
    [
        (api_error("2621573"), True),
        (api_error(None, 500), True),
        (TransportError("reset", cluster="c", sent=True), True),
        (RequestTimeout("late", cluster="c", sent=True), True),
        (api_error(None, 429, retry_after=3.0), 3.0),
        (api_error(None, 503, retry_after=0.0), 0.0),
        (api_error(None, 503, retry_after=1e6), MAX_RETRY_AFTER),
        (api_error("65536038", retry_after=3.0), False),
        (api_error("65536870"), False),
        (AuthError("401", cluster="c"), False),
        (TlsError("bad cert", cluster="c"), False),
        (ProtocolError("odd", cluster="c"), False),
        (ValueError("a bug"), False),
    ],
)
def test_predicate_retries_transient_failures_after_the_servers_wait(
    exc: Exception, verdict: bool | float
) -> None:
    """True: stamina's backoff; a float: the server's Retry-After; False: give up."""
    got = RetryOn()(exc)
    assert got == verdict
    assert type(got) is type(verdict)  # 0.0 is a wait, not a refusal


def test_cryptsoft_is_retried_once_then_is_a_tls_error() -> None:
    """The first Cryptsoft answer is transient; the second gives up, reported as tls."""
    retries = RetryOn()
    first, second = api_error(KMIP_CRYPTSOFT), api_error(KMIP_CRYPTSOFT)
    assert retries(first) is True
    assert retries.category(first) is ErrorCategory.TRANSIENT
    assert retries(second) is False
    assert retries.category(second) is ErrorCategory.TLS
    assert second.category is ErrorCategory.TRANSIENT  # the exception is left as it was
    assert retries.category(api_error("2621573")) is ErrorCategory.TRANSIENT


def test_cryptsoft_is_counted_per_unit_of_work() -> None:
    """Another batch's predicate starts its own count; other failures do not count."""
    retries = RetryOn()
    assert retries(api_error(KMIP_CRYPTSOFT)) is True
    assert retries(api_error("2621573")) is True
    assert RetryOn()(api_error(KMIP_CRYPTSOFT)) is True
    assert retries.cryptsoft == 1
