"""Which failures are worth another attempt, and after how long: the retry policy, in one place.

The table follows ../shared/ONTAP.md (the classification is inferred from NetApp's
documentation and its Ansible modules, which retry 2621573). ``RetryOn`` is the predicate
stamina's ``on=`` takes for one unit of work: ``False`` gives up, ``True`` backs off
exponentially, a number of seconds waits what the server asked for (``Retry-After`` on a
429 or a 503, parsed here by ``parse_retry_after``).
"""

from __future__ import annotations

import dataclasses
import email.utils
from datetime import UTC, datetime
from typing import Final

from bulkkm.errors import (
    ApiError,
    AuthError,
    ErrorCategory,
    OntapError,
    TlsError,
    TransportError,
    WriteRefused,
)

__all__ = [
    "ALREADY_CONFIGURED",
    "CODES",
    "KEYS_IN_USE",
    "KMIP_CRYPTSOFT",
    "KMIP_CRYPTSOFT_ATTEMPTS",
    "MAX_RETRY_AFTER",
    "NOT_CONFIGURED",
    "TOO_MANY_REQUESTS",
    "RetryOn",
    "RetryPolicy",
    "classify",
    "is_retryable",
    "parse_retry_after",
    "refused",
]

ALREADY_CONFIGURED: Final = "65536870"
KEYS_IN_USE: Final = "65536700"
"""DELETE refused: the server is the only one holding keys in use (never worked around)."""
NOT_CONFIGURED: Final = "65536843"
"""DELETE of a server the key manager does not have: it is already gone."""
KMIP_CRYPTSOFT: Final = "66060340"
"""A KMIP TLS error that is transient at most once or twice, then permanent."""
KMIP_CRYPTSOFT_ATTEMPTS: Final = 2
"""A unit of work meeting the Cryptsoft code this many times gives up: the error is ``tls``."""
MAX_RETRY_AFTER: Final = 60.0
"""The longest ``Retry-After`` honoured, in seconds: a server asking for more gets this."""
TOO_MANY_REQUESTS: Final = 429

CODES: Final[dict[str, ErrorCategory]] = {
    "65536870": ErrorCategory.PERMANENT,  # already configured: confirmed by a read, not retried
    "65536871": ErrorCategory.PERMANENT,  # the same server twice in one request
    "65536038": ErrorCategory.PRECONDITION,  # more than 4 primaries
    "65536821": ErrorCategory.PRECONDITION,  # client certificate not installed
    "65536822": ErrorCategory.PRECONDITION,  # multitenant key management: ONTAP too old
    "65536824": ErrorCategory.PRECONDITION,  # multitenant key management: MetroCluster
    "65536828": ErrorCategory.PRECONDITION,  # external key management not enabled on the SVM
    "65536834": ErrorCategory.TRANSIENT,  # failed to get existing key-server details
    "65536852": ErrorCategory.TRANSIENT,  # failed to query the KMIP protocol versions
    "65536921": ErrorCategory.TRANSIENT,  # unable to execute command on the KMIP server
    "66060338": ErrorCategory.TLS,  # KMIP server TLS: wrong server CA certificates
    "66060339": ErrorCategory.TLS,  # KMIP server TLS: wrong client certificates
    KMIP_CRYPTSOFT: ErrorCategory.TRANSIENT,  # KMIP server TLS: Cryptsoft error (see above)
    "65536600": ErrorCategory.TRANSIENT,  # node out of quorum (DELETE too; never force=true)
    "2621573": ErrorCategory.TRANSIENT,  # Vserver temporarily locked (POST and DELETE)
    KEYS_IN_USE: ErrorCategory.PERMANENT,  # DELETE: the only holder of keys in use
    NOT_CONFIGURED: ErrorCategory.PERMANENT,  # DELETE: not configured (the client says absent)
}

RETRYABLE: Final = frozenset(
    {ErrorCategory.TRANSIENT, ErrorCategory.TRANSPORT, ErrorCategory.TIMEOUT}
)


def classify(code: str | None, http_status: int | None) -> ErrorCategory:
    """The category of an ONTAP error answer."""
    if http_status in (401, 403):
        return ErrorCategory.AUTH
    if http_status == TOO_MANY_REQUESTS:  # throttled: try again, after its Retry-After
        return ErrorCategory.TRANSIENT
    if code in CODES:
        return CODES[code]
    # An unknown 5xx is the server's trouble, worth another try; an unknown 4xx is ours.
    if http_status is not None and http_status >= 500:
        return ErrorCategory.TRANSIENT
    return ErrorCategory.PERMANENT


def refused(exc: OntapError) -> bool:
    """Whether a write's failure proves the cluster applied none of it.

    Only these do: a request never sent (no connection, a failed TLS handshake, a read-only
    run), credentials refused, and an ONTAP error answer whose code is in ``CODES`` (each
    names a refusal). Anything else that fails once the write has left the process (a lost
    or late answer, a 5xx or 4xx without a known code, an odd success answer, a failing or
    vanished job) leaves its fate unknown: it must be read back, never sent again blindly.
    """
    if isinstance(exc, TransportError):
        return not exc.sent
    if isinstance(exc, TlsError | AuthError | WriteRefused):
        return True
    return isinstance(exc, ApiError) and exc.code in CODES


def is_retryable(exc: Exception) -> bool:
    """Whether a failure is worth another try at all: transient, transport and timeout errors."""
    return isinstance(exc, OntapError) and exc.category in RETRYABLE


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """A ``Retry-After`` header in seconds, within [0, ``MAX_RETRY_AFTER``]; None if unreadable.

    RFC 9110 allows delay-seconds (``120``) or an HTTP date (``Wed, 21 Oct 2015 07:28:00
    GMT``, measured from ``now``); a date in the past means at once.
    """
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        # Cut before converting: a server's thousand digits are not worth an int.
        return min(float(text[:8]), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # an HTTP date is GMT even when it says "-0000"
        when = when.replace(tzinfo=UTC)
    seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


@dataclasses.dataclass(slots=True)
class RetryOn:
    """stamina's ``on=`` for one unit of work (a discovery, a batch's POSTs, a read-back).

    Called once per failed attempt. Returns ``False`` to give up, ``True`` for stamina's
    exponential backoff, or the seconds a 429 or 503 asked to wait (``Retry-After``). It
    counts ONTAP's Cryptsoft code across the unit's attempts: transient the first time,
    a ``tls`` error once seen ``KMIP_CRYPTSOFT_ATTEMPTS`` times (``category`` says which;
    the exception itself is never changed).
    """

    cryptsoft: int = 0
    """Attempts of this unit that ended with the Cryptsoft code."""

    def __call__(self, exc: Exception) -> bool | float:
        """Whether to try again after ``exc``, and after how long when the server said."""
        if not isinstance(exc, OntapError):
            return False
        if isinstance(exc, ApiError) and exc.code == KMIP_CRYPTSOFT:
            self.cryptsoft += 1
        if self.category(exc) not in RETRYABLE:
            return False
        if exc.retry_after is None:
            return True
        return min(max(exc.retry_after, 0.0), MAX_RETRY_AFTER)

    def category(self, exc: OntapError) -> ErrorCategory:
        """The category ``exc`` has in this unit of work (what the report says of it)."""
        if (
            isinstance(exc, ApiError)
            and exc.code == KMIP_CRYPTSOFT
            and self.cryptsoft >= KMIP_CRYPTSOFT_ATTEMPTS
        ):
            return ErrorCategory.TLS
        return exc.category


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """How hard to try one request: bounded by attempts and by time."""

    attempts: int = 6
    timeout: float = 300.0
    """Seconds from the first attempt after which no new attempt starts."""
    wait_initial: float = 0.5
    wait_max: float = 15.0
    wait_jitter: float = 1.0

    def __post_init__(self) -> None:
        """Refuse a policy that could not try at all."""
        if self.attempts < 1 or self.timeout <= 0:
            raise ValueError("a retry policy needs at least one attempt and a positive timeout")
