"""Checking TLS files up front: each CA file and each certificate/key pair loaded once."""

from __future__ import annotations

import re
import ssl
from pathlib import Path
from typing import Final

__all__ = ["TlsFiles"]

_SSL_LOCATION: Final = re.compile(r"\s*\(_ssl\.c:\d+\)$")


class _EncryptedKeyError(Exception):
    """Raised from the password callback: bulkkm cannot ask for a key's passphrase."""


def _refuse_passphrase() -> str:
    """Stop OpenSSL from prompting on the terminal for an encrypted key's passphrase."""
    raise _EncryptedKeyError


def _reason(exc: ssl.SSLError) -> str:
    """OpenSSL's reason, without the C source location."""
    return _SSL_LOCATION.sub("", str(exc))


def _context() -> ssl.SSLContext:
    """A bare client context to load files into.

    ``ssl.create_default_context()`` would load the system trust store first (tens of
    milliseconds), which tells nothing about the file being checked.
    """
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


def _missing(what: str, written: str, file: Path) -> str | None:
    """Why ``file`` cannot be used as ``what``, or None when it is a readable file."""
    if not file.exists():
        return f"{what} {written!r} does not exist (looked for {file})"
    if not file.is_file():
        return f"{what} {written!r} is not a file ({file})"
    return None


class TlsFiles:
    """Loads CA files and client certificates, remembering each answer for the load."""

    __slots__ = ("_ca", "_chains")

    def __init__(self) -> None:
        """Nothing checked yet."""
        self._ca: dict[Path, str | None] = {}
        self._chains: dict[tuple[Path, Path | None], tuple[str | None, str | None]] = {}

    def ca_problem(self, written: str, file: Path) -> str | None:
        """Why ``file`` cannot serve as a CA bundle, or None."""
        if file not in self._ca:
            problem = _missing("CA file", written, file)
            if problem is None:
                try:
                    _context().load_verify_locations(cafile=file)
                except ssl.SSLError as exc:
                    problem = f"cannot load CA file {written!r}: {_reason(exc)}"
                except OSError as exc:
                    problem = f"cannot read CA file {written!r}: {exc.strerror or exc}"
            self._ca[file] = problem
        return self._ca[file]

    def chain_problems(
        self, cert: tuple[str, Path], key: tuple[str, Path] | None
    ) -> tuple[str | None, str | None]:
        """Problems with (the certificate, the key): each as written and resolved, or None."""
        cache_key = (cert[1], key[1] if key else None)
        if cache_key not in self._chains:
            self._chains[cache_key] = self._check_chain(cert, key)
        return self._chains[cache_key]

    @staticmethod
    def _check_chain(
        cert: tuple[str, Path], key: tuple[str, Path] | None
    ) -> tuple[str | None, str | None]:
        """Load the pair once; say which of the two files is at fault."""
        cert_problem = _missing("client certificate", *cert)
        key_problem = _missing("client key", *key) if key else None
        if cert_problem or key_problem:
            return cert_problem, key_problem
        try:
            _context().load_cert_chain(
                cert[1], key[1] if key else None, password=_refuse_passphrase
            )
        except _EncryptedKeyError:
            where = key[0] if key else cert[0]
            message = f"the private key in {where!r} is encrypted; bulkkm needs it unencrypted"
            return (None, message) if key else (message, None)
        except ssl.SSLError as exc:
            if key is None:
                return (
                    f"cannot load client certificate {cert[0]!r} with its key "
                    f"({_reason(exc)}): set tls.client_key if the key is in another file",
                    None,
                )
            return None, f"cannot load {cert[0]!r} with key {key[0]!r}: {_reason(exc)}"
        except OSError as exc:
            return f"cannot read {cert[0]!r}: {exc.strerror or exc}", None
        return None, None
