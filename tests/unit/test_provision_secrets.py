"""Controller-side PKI and secrets: made once, reused unchanged (idempotent deploys), root-only on disk."""

from __future__ import annotations

import stat
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from provision.secrets import ensure_ca, ensure_host_cert, secret, signing_key


def test_ca_is_generated_once(tmp_path: Path) -> None:
    """A second deploy reuses the appliance CA byte for byte (operators trust it once)."""
    cert, key = ensure_ca(tmp_path)
    first = cert.read_bytes(), key.read_bytes()
    cert2, key2 = ensure_ca(tmp_path)
    assert (cert2.read_bytes(), key2.read_bytes()) == first


def test_host_certificate_is_reissued_only_when_its_names_change(tmp_path: Path) -> None:
    """Same names → same certificate (no change on redeploy); a new address → a new certificate."""
    cert, _ = ensure_host_cert(tmp_path, "edge", ["edge", "mipo.lab"], ["198.18.0.10", "198.18.1.10"])
    first = cert.read_bytes()
    assert ensure_host_cert(tmp_path, "edge", ["edge", "mipo.lab"], ["198.18.0.10", "198.18.1.10"])[0].read_bytes() \
        == first
    again, _ = ensure_host_cert(tmp_path, "edge", ["edge", "mipo.lab"], ["198.18.0.11", "198.18.1.10"])
    assert again.read_bytes() != first


def test_host_certificate_is_a_server_certificate_signed_by_the_ca(tmp_path: Path) -> None:
    """The edge certificate names its addresses, serves TLS only and chains to the appliance CA."""
    cert_path, _ = ensure_host_cert(tmp_path, "db", ["db"], ["198.18.1.20"])
    ca = x509.load_pem_x509_certificate(ensure_ca(tmp_path)[0].read_bytes())
    cert = x509.load_pem_x509_certificates(cert_path.read_bytes())[0]
    cert.verify_directly_issued_by(ca)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["198.18.1.20"]
    assert cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage(
        [ExtendedKeyUsageOID.SERVER_AUTH])


def test_secrets_are_stable_and_root_only(tmp_path: Path) -> None:
    """Passwords and keys are made once and kept in 0600 files under a 0700 directory."""
    assert secret(tmp_path, "db-mipo_ingest") == secret(tmp_path, "db-mipo_ingest")
    assert secret(tmp_path, "db-mipo_ingest") != secret(tmp_path, "db-mipo_manager")
    assert signing_key(tmp_path) == signing_key(tmp_path)
    assert signing_key(tmp_path).startswith(b"-----BEGIN PRIVATE KEY-----")
    ca_key = ensure_ca(tmp_path)[1]
    for directory in (tmp_path / "secrets", tmp_path / "pki"):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for path in [ca_key, *(tmp_path / "secrets").iterdir()]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
