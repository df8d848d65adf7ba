"""ONTAP's error answers: the codes the simulator sends and the exception that carries one.

Codes and messages for POST key-servers come from NetApp's documentation of that endpoint,
those of DELETE from its page (65536700, 65536600, 65536843); the generic request codes
(``UNEXPECTED_ARGUMENT`` and below) are ONTAP's usual ones as far as we know. The HTTP
statuses chosen for KMIP failures, for 65536843 (404) and 65536600 (400) are an inference.
"""

from __future__ import annotations

from typing import Final

__all__ = ["TRANSIENT_CODES", "SimError", "error_body"]

MAX_SERVERS: Final = "65536038"
CERTIFICATE_MISSING: Final = "65536821"
MULTITENANT_UNSUPPORTED: Final = "65536822"
METROCLUSTER: Final = "65536824"
NOT_EXTERNAL: Final = "65536828"
KEY_SERVER_DETAILS: Final = "65536834"
KMIP_VERSIONS: Final = "65536852"
ALREADY_CONFIGURED: Final = "65536870"
DUPLICATE: Final = "65536871"
KMIP_COMMAND: Final = "65536921"
TLS_SERVER_CA: Final = "66060338"
TLS_CLIENT_CERT: Final = "66060339"
TLS_CRYPTSOFT: Final = "66060340"
VSERVER_LOCKED: Final = "2621573"
OUT_OF_QUORUM: Final = "65536600"
KEYS_IN_USE: Final = "65536700"
NOT_CONFIGURED: Final = "65536843"

NOT_FOUND: Final = "4"
API_NOT_FOUND: Final = "3"
METHOD_NOT_ALLOWED: Final = "5"
UNEXPECTED_ARGUMENT: Final = "262197"
INVALID_VALUE: Final = "262196"
MISSING_FIELD: Final = "262186"
INVALID_JSON: Final = "262179"
INTERNAL: Final = "13"
NOT_AUTHENTICATED: Final = "6"

MESSAGES: Final[dict[str, str]] = {
    MAX_SERVERS: "A maximum of 4 active key servers are allowed.",
    CERTIFICATE_MISSING: "The certificate is not installed.",
    MULTITENANT_UNSUPPORTED: (
        "Multitenant key management is not supported in the current cluster version."
    ),
    METROCLUSTER: "Multitenant key management is not supported in MetroCluster configurations.",
    NOT_EXTERNAL: "External key management is not enabled for the SVM.",
    KEY_SERVER_DETAILS: "Failed to get existing key-server details for the SVM.",
    KMIP_VERSIONS: "Failed to query supported KMIP protocol versions.",
    ALREADY_CONFIGURED: "Key management servers are already configured.",
    DUPLICATE: "Duplicate key management servers exist.",
    KMIP_COMMAND: "The following issues were found. Unable to execute command on KMIP server.",
    TLS_SERVER_CA: (
        "Unable to establish secure connection to KMIP server due to incorrect server_ca"
        " certificates."
    ),
    TLS_CLIENT_CERT: (
        "Unable to establish secure connection to KMIP server due to incorrect client certificates."
    ),
    TLS_CRYPTSOFT: "Unable to establish secure connection to KMIP server due to Cryptsoft error.",
    VSERVER_LOCKED: (
        "Vserver is temporarily locked. Wait a few minutes, then try the command again."
    ),
    INTERNAL: "Internal Error. Wait a few minutes, then try the command again.",
    OUT_OF_QUORUM: "This operation cannot be performed because a node is out of quorum.",
    KEYS_IN_USE: (
        "The key server contains keys that are currently in use and not available from any"
        " other configured key server in the SVM."
    ),
    NOT_CONFIGURED: "The key server is not configured.",
}

TRANSIENT_CODES: Final = (KEY_SERVER_DETAILS, KMIP_VERSIONS, KMIP_COMMAND, VSERVER_LOCKED)
"""The codes ``Faults.transient_rate`` cycles through, in this order."""

_KMIP_CODES: Final = frozenset(
    {KEY_SERVER_DETAILS, KMIP_VERSIONS, KMIP_COMMAND, TLS_SERVER_CA, TLS_CLIENT_CERT, TLS_CRYPTSOFT}
)


def status_for(code: str) -> int:
    """The HTTP status ONTAP pairs with a key-server error code (KMIP failures: 500)."""
    if code in _KMIP_CODES:
        return 500
    if code == VSERVER_LOCKED:
        # Inference: a configuration lock held by another operation reads as a conflict.
        return 409
    if code == NOT_CONFIGURED:
        # Inference: ONTAP's DELETE page gives no status; the server named is not there.
        return 404
    return 400


def error_body(code: str, message: str, target: str | None = None) -> dict[str, object]:
    """ONTAP's error document: ``{"error": {"message", "code", "target"?}}``, code a string."""
    error: dict[str, object] = {"message": message, "code": code}
    if target is not None:
        error["target"] = target
    return {"error": error}


class SimError(Exception):
    """An ONTAP error answer, raised where the rule fails and rendered by the server."""

    def __init__(
        self,
        code: str,
        message: str | None = None,
        *,
        status: int | None = None,
        target: str | None = None,
    ) -> None:
        """Carry ONTAP's code, its message (default: the documented one) and HTTP status."""
        self.code = code
        self.message = message if message is not None else MESSAGES.get(code, "Error.")
        self.status = status if status is not None else status_for(code)
        self.target = target
        super().__init__(f"{self.status} {code}: {self.message}")

    def error(self) -> dict[str, object]:
        """The inner ``error`` object of this answer (also a failed job's ``error``)."""
        error: dict[str, object] = {"message": self.message, "code": self.code}
        if self.target is not None:
            error["target"] = self.target
        return error

    def body(self) -> dict[str, object]:
        """The JSON error document of this answer."""
        return {"error": self.error()}
