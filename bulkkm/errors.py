"""The one exception tree of bulkkm.

::

    BulkkmError
    ├── UsageError            a command line that cannot run (exit 2, nothing sent)
    ├── InventoryError        every problem found in an inventory file (exit 2, nothing sent)
    ├── ReportError           a report that cannot be read back (resume, summarize; exit 2)
    └── OntapError            one failed exchange with one cluster (becomes an outcome)
        ├── TransportError    connection refused, reset or dropped           (transport)
        │   └── RequestTimeout   no answer within the limit                  (timeout)
        ├── TlsError          the cluster's certificate cannot be verified   (tls)
        ├── AuthError         401 or 403                                      (auth)
        ├── ProtocolError     an answer that is not what ONTAP sends          (permanent)
        ├── WriteRefused      a write attempted in a GET-only run (a bug)     (permanent)
        └── ApiError          an ONTAP error answer (or a 429); its category from ``retry``

Only ``OntapError`` crosses into the engine, where it becomes an outcome; the others stop
the run before anything is sent. Every ``OntapError`` carries the cluster it concerns and,
once known, the target, the HTTP status, ONTAP's error code and the wait a 429 or 503 asked
for (``Retry-After``, in seconds). Any of them may be ``sent``:
the request left the process and nothing in what came back proves the cluster did not act on
it. For a write that means its fate is unknown until the key servers are read back.
"""

from __future__ import annotations

import dataclasses
from enum import StrEnum

__all__ = [
    "ApiError",
    "AuthError",
    "BulkkmError",
    "ErrorCategory",
    "InventoryError",
    "OntapError",
    "Problem",
    "ProtocolError",
    "ReportError",
    "RequestTimeout",
    "TlsError",
    "TransportError",
    "UsageError",
    "WriteRefused",
]


class ErrorCategory(StrEnum):
    """The error categories of the report (``error.category``)."""

    TRANSIENT = "transient"
    PERMANENT = "permanent"
    PRECONDITION = "precondition"
    AUTH = "auth"
    TLS = "tls"
    TRANSPORT = "transport"
    TIMEOUT = "timeout"


class BulkkmError(Exception):
    """The root of every error bulkkm raises on purpose."""


class UsageError(BulkkmError):
    """A command line that cannot run."""


class ReportError(BulkkmError):
    """A report file that cannot be read back."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Problem:
    """One mistake in an inventory file, located by file, line and key path."""

    file: str
    line: int | None
    key_path: str
    message: str

    def __str__(self) -> str:
        """Render as ``file:line: key.path: message``, the form editors jump to."""
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return (
            f"{where}: {self.key_path}: {self.message}"
            if self.key_path
            else f"{where}: {self.message}"
        )


class InventoryError(BulkkmError):
    """Every problem found in one inventory file, reported together."""

    def __init__(self, problems: tuple[Problem, ...]) -> None:
        """Keep all the problems; the message is the first one and a count."""
        self.problems = problems
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(f"{problems[0]}{more}" if problems else "invalid inventory")


class OntapError(BulkkmError):
    """One failed exchange with one cluster."""

    category: ErrorCategory = ErrorCategory.PERMANENT

    def __init__(
        self,
        message: str,
        *,
        cluster: str,
        target: str | None = None,
        http_status: int | None = None,
        code: str | None = None,
        category: ErrorCategory | None = None,
        sent: bool = False,
        retry_after: float | None = None,
    ) -> None:
        """Record where the failure happened, what ONTAP said, whether it may have acted."""
        super().__init__(message)
        self.message = message
        self.cluster = cluster
        self.target = target
        self.http_status = http_status
        self.code = code
        if category is not None:
            self.category = category
        self.sent = sent
        """Whether the cluster may have acted on the request (a write: read it back)."""
        self.retry_after = retry_after
        """Seconds the server asked us to wait before trying again (bounded), if it did."""

    def __str__(self) -> str:
        """Say the cluster, what failed and ONTAP's code, on one line."""
        parts = [f"{self.cluster}:"]
        if self.target:
            parts.append(f"{self.target}:")
        parts.append(self.message)
        if self.http_status is not None:
            parts.append(f"(HTTP {self.http_status}")
            parts.append(f"code {self.code})" if self.code else ")")
        return " ".join(parts).replace(" )", ")")


class TransportError(OntapError):
    """The connection was refused, reset or dropped (``sent`` once the request was written)."""

    category = ErrorCategory.TRANSPORT


class RequestTimeout(TransportError):
    """No answer came within the request timeout."""

    category = ErrorCategory.TIMEOUT


class TlsError(OntapError):
    """The cluster's TLS certificate could not be verified, or the handshake failed."""

    category = ErrorCategory.TLS


class AuthError(OntapError):
    """The cluster refused the credentials (401) or the account's rights (403)."""

    category = ErrorCategory.AUTH


class ProtocolError(OntapError):
    """The cluster answered something ONTAP does not send."""


class WriteRefused(OntapError):
    """A write was attempted by a run that may only read (``--dry-run``, ``plan``, ``check``)."""


class ApiError(OntapError):
    """An ONTAP error answer (``{"error": {"code": ..., "message": ...}}``)."""
