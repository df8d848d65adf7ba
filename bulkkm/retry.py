"""Which failures are worth another attempt: ONTAP's error codes classified, in one place.

The table follows ../shared/ONTAP.md (the classification is inferred from NetApp's
documentation and its Ansible modules, which retry 2621573).
"""

from __future__ import annotations

import dataclasses
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
    "KMIP_CRYPTSOFT",
    "RetryPolicy",
    "classify",
    "is_retryable",
    "refused",
]

ALREADY_CONFIGURED: Final = "65536870"
KMIP_CRYPTSOFT: Final = "66060340"
"""A KMIP TLS error that is transient at most once or twice, then permanent."""
KMIP_CRYPTSOFT_ATTEMPTS: Final = 2

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
    "65536600": ErrorCategory.TRANSIENT,  # node out of quorum
    "2621573": ErrorCategory.TRANSIENT,  # Vserver temporarily locked
}

RETRYABLE: Final = frozenset(
    {ErrorCategory.TRANSIENT, ErrorCategory.TRANSPORT, ErrorCategory.TIMEOUT}
)


def classify(code: str | None, http_status: int | None) -> ErrorCategory:
    """The category of an ONTAP error answer."""
    if http_status in (401, 403):
        return ErrorCategory.AUTH
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
    """The retry predicate handed to stamina: transient, transport and timeout errors only."""
    return isinstance(exc, OntapError) and exc.category in RETRYABLE


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
