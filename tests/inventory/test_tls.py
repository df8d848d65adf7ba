"""TLS settings: files checked and loaded up front, certificate auth, verify: false warned."""

from __future__ import annotations

from pathlib import Path

import pytest

from bulkkm.inventory import Tls
from tests.inventory.conftest import Write, load, problems_of

HEAD = """\
version: 1
defaults:
  username: admin
  password: env:ONTAP_PASSWORD
  key_servers: [kms1.example.com]
"""


def with_tls(tls: str, *, credentials: bool = True) -> str:
    """A one-cluster file whose defaults have ``tls: {tls}``."""
    head = (
        HEAD
        if credentials
        else HEAD.replace("  username: admin\n  password: env:ONTAP_PASSWORD\n", "")
    )
    return head + f"  tls: {{{tls}}}\nclusters: [{{name: c1, address: h1, svms: all}}]\n"


def test_files_resolve_against_the_inventory_directory(write: Write, certs_dir: Path) -> None:
    """Relative paths are made absolute against the inventory file's directory."""
    text = with_tls(
        "ca_file: certs/ca.pem, client_cert: certs/client.pem, client_key: certs/client.key"
    )
    tls = load(write(text)).clusters[0].tls
    assert tls == Tls(
        verify=True,
        ca_file=certs_dir / "ca.pem",
        client_cert=certs_dir / "client.pem",
        client_key=certs_dir / "client.key",
    )
    assert tls.ca_file is not None
    assert tls.ca_file.is_absolute()


@pytest.mark.parametrize(
    "tls",
    [
        pytest.param("client_cert: certs/client.pem, client_key: certs/client.key", id="pair"),
        pytest.param("client_cert: certs/client-and-key.pem", id="key-in-cert-file"),
    ],
)
def test_a_client_certificate_replaces_username_and_password(
    write: Write, certs_dir: Path, tls: str
) -> None:
    """With a client certificate, username and password are optional."""
    cluster = load(write(with_tls(tls, credentials=False))).clusters[0]
    assert (cluster.username, cluster.password) == (None, None)
    assert cluster.tls.client_cert is not None


@pytest.mark.parametrize(
    ("tls", "key_path", "message"),
    [
        pytest.param(
            "ca_file: certs/missing.pem",
            "defaults.tls.ca_file",
            "CA file 'certs/missing.pem' does not exist (looked for ",
            id="ca-missing",
        ),
        pytest.param(
            "ca_file: certs",
            "defaults.tls.ca_file",
            "CA file 'certs' is not a file",
            id="ca-directory",
        ),
        pytest.param(
            "ca_file: certs/notes.txt",
            "defaults.tls.ca_file",
            "cannot load CA file 'certs/notes.txt': [X509: NO_CERTIFICATE_OR_CRL_FOUND]",
            id="ca-not-a-certificate",
        ),
        pytest.param(
            "client_key: certs/client.key",
            "defaults.tls.client_key",
            "client_key without client_cert",
            id="key-without-cert",
        ),
        pytest.param(
            "client_cert: certs/client.pem",
            "defaults.tls.client_cert",
            "cannot load client certificate 'certs/client.pem' with its key",
            id="cert-without-key",
        ),
        pytest.param(
            "client_cert: certs/client.pem, client_key: certs/other.key",
            "defaults.tls.client_key",
            "cannot load 'certs/client.pem' with key 'certs/other.key': "
            "[X509: KEY_VALUES_MISMATCH]",
            id="key-does-not-match",
        ),
        pytest.param(
            "client_cert: certs/client.pem, client_key: certs/encrypted.key",
            "defaults.tls.client_key",
            "the private key in 'certs/encrypted.key' is encrypted",
            id="key-encrypted",
        ),
        pytest.param(
            "client_cert: certs/nope.pem, client_key: certs/client.key",
            "defaults.tls.client_cert",
            "client certificate 'certs/nope.pem' does not exist",
            id="cert-missing",
        ),
    ],
)
def test_unusable_tls_files_are_reported_where_written(
    write: Write, certs_dir: Path, tls: str, key_path: str, message: str
) -> None:
    """Each file problem is one problem at the key that names the file, on its line."""
    problems = problems_of(write(with_tls(tls)))
    assert [(p.key_path, p.line) for p in problems] == [(key_path, 6)]
    assert problems[0].message.startswith(message)


def test_a_bad_file_shared_by_many_clusters_is_one_problem(write: Write) -> None:
    """The file is checked once; its problem is reported once, where it was written."""
    text = (
        HEAD
        + "  tls: {ca_file: nope.pem}\nclusters:\n"
        + "".join(f"  - {{name: c{i}, address: h{i}, svms: all}}\n" for i in range(5))
    )
    assert [p.key_path for p in problems_of(write(text))] == ["defaults.tls.ca_file"]


def test_verify_false_is_allowed_and_warned_about_naming_the_clusters(write: Write) -> None:
    """``verify: false`` must be written out; the warning names the clusters it affects."""
    text = HEAD + (
        "groups: {lab: {tls: {verify: false}}}\n"
        "clusters:\n"
        "  - {name: lab-1, address: h1, svms: all, groups: [lab]}\n"
        "  - {name: prod-1, address: h2, svms: all}\n"
        "  - {name: lab-2, address: h3, svms: all, groups: [lab]}\n"
    )
    inventory = load(write(text))
    assert [c.tls.verify for c in inventory.clusters] == [False, True, False]
    assert inventory.warnings == (
        "tls.verify is false for clusters lab-1, lab-2: their HTTPS certificates are not checked",
    )


def test_verify_true_gives_no_warning(write: Write) -> None:
    """The default and an explicit ``verify: true`` are silent."""
    assert load(write(with_tls("verify: true"))).warnings == ()
