"""The fleet's TLS: a throw-away CA and one server certificate every cluster presents."""

from __future__ import annotations

import ssl
from pathlib import Path

import trustme

__all__ = ["make_tls"]


def make_tls(ca_file: Path) -> ssl.SSLContext:
    """Write a new CA's PEM to ``ca_file``; return a server context with a cert it signed.

    The certificate names 127.0.0.1, ::1 and localhost, so clients verify it as they
    would a cluster's, against ``ca_file``.
    """
    ca = trustme.CA(organization_name="bulkkm simulated fleet")
    cert = ca.issue_cert("127.0.0.1", "::1", "localhost")
    ca.cert_pem.write_to_path(str(ca_file))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    return context
