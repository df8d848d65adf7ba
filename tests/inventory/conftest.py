"""Fixtures for the inventory tests: files written to a temp dir, an environment, certificates."""

from __future__ import annotations

import dataclasses
import textwrap
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
import trustme
from cryptography.hazmat.primitives import serialization

from bulkkm.errors import InventoryError, Problem
from bulkkm.inventory import Inventory, load_inventory

ENV: Mapping[str, str] = {
    "ONTAP_PASSWORD": "ontap-secret-0001",
    "KMIP_PASSWORD": "kmip-secret-0002",
    "ONTAP_EMEA_PASSWORD": "emea-secret-0003",
    "ONTAP_APAC_PASSWORD": "apac-secret-0004",
    "KMIP_APAC_PASSWORD": "kmip-apac-secret-0005",
    "EMPTY": "",
}
"""The variables the example inventories and the tests refer to (values are fake)."""

Write = Callable[..., Path]


@pytest.fixture
def write(tmp_path: Path) -> Write:
    """Write dedented text to a file in a temp dir (``fleet.yaml`` unless named)."""

    def write(text: str, name: str = "fleet.yaml") -> Path:
        """Write ``text`` to ``name`` and return its path."""
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write


def load(path: Path, environ: Mapping[str, str] = ENV) -> Inventory:
    """Load with the test environment."""
    return load_inventory(path, environ=environ)


def problems_of(path: Path, environ: Mapping[str, str] = ENV) -> tuple[Problem, ...]:
    """The problems ``load_inventory`` raises for ``path`` (fails if it loads)."""
    with pytest.raises(InventoryError) as info:
        load_inventory(path, environ=environ)
    return info.value.problems


def marked_line(text: str) -> int | None:
    """The line of ``text`` holding the ``# <-`` marker (after dedent), if any."""
    for number, line in enumerate(textwrap.dedent(text).splitlines(), start=1):
        if "# <-" in line:
            return number
    return None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Certs:
    """Certificate files made for the tests."""

    ca: Path
    cert: Path
    key: Path
    cert_and_key: Path
    other_key: Path
    encrypted_key: Path
    not_pem: Path


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """A CA, a client certificate with its key (separate and combined), and bad files."""
    directory = tmp_path_factory.mktemp("certs")
    ca = trustme.CA()
    leaf = ca.issue_cert("bulkkm.example.com")
    other = ca.issue_cert("other.example.com")
    files = Certs(
        ca=directory / "ca.pem",
        cert=directory / "client.pem",
        key=directory / "client.key",
        cert_and_key=directory / "client-and-key.pem",
        other_key=directory / "other.key",
        encrypted_key=directory / "encrypted.key",
        not_pem=directory / "notes.txt",
    )
    ca.cert_pem.write_to_path(str(files.ca))
    leaf.cert_chain_pems[0].write_to_path(str(files.cert))
    leaf.private_key_pem.write_to_path(str(files.key))
    leaf.private_key_and_cert_chain_pem.write_to_path(str(files.cert_and_key))
    other.private_key_pem.write_to_path(str(files.other_key))
    key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), password=None)
    files.encrypted_key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )
    files.not_pem.write_text("not a certificate\n", encoding="utf-8")
    return files


@pytest.fixture
def certs_dir(tmp_path: Path, certs: Certs) -> Path:
    """The test certificates copied to ``certs/`` beside the files ``write`` makes."""
    directory = tmp_path / "certs"
    directory.mkdir()
    for field in dataclasses.fields(certs):
        source: Path = getattr(certs, field.name)
        (directory / source.name).write_bytes(source.read_bytes())
    return directory
