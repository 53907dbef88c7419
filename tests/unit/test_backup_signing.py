"""Manifest signatures, identity validation, backup ids and libpq targets that keep passwords out of argv."""

from __future__ import annotations

import stat
from pathlib import Path

import msgspec
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from psycopg.conninfo import conninfo_to_dict

from app.config import parse_settings
from app.domain.backups.schemas import RestoreRequest
from app.domain.backups.signing import generate_signing_key_pem, load_signing_key, sign, verify
from app.domain.backups.storage import backup_path
from app.domain.backups.tools import libpq_target
from app.errors import Invalid, NotFound, Unavailable


def _settings(credentials: Path):  # type: ignore[no-untyped-def]
    db = {"name": "x", "sslmode": "disable"}
    return parse_settings({"databases": {"config": db, "jobs": db, "results": db}}, str(credentials))


def test_signature_verifies_only_the_signed_bytes_with_the_same_key() -> None:
    key = Ed25519PrivateKey.generate()
    signature = sign(key, b'{"backup_id":"a"}')
    verify(key, b'{"backup_id":"a"}', signature)
    for data, k in ((b'{"backup_id":"b"}', key), (b'{"backup_id":"a"}', Ed25519PrivateKey.generate())):
        with pytest.raises(Invalid) as refused:
            verify(k, data, signature)
        assert refused.value.reason == "signature_invalid"


def test_signing_key_must_be_an_ed25519_credential(tmp_path: Path) -> None:
    """No key, an unreadable key or another kind of key: the service refuses, naming the credential."""
    settings = _settings(tmp_path)
    with pytest.raises(Unavailable, match="backup-signing-key"):
        load_signing_key(settings)
    (tmp_path / "backup-signing-key").write_bytes(generate_private_key(SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    with pytest.raises(Unavailable, match="not an Ed25519 key"):
        load_signing_key(settings)
    (tmp_path / "backup-signing-key").write_bytes(generate_signing_key_pem())
    assert isinstance(load_signing_key(settings), Ed25519PrivateKey)


def test_restore_request_accepts_age_keygen_output_and_nothing_else() -> None:
    keygen = "# created: 2026-11-29T05:00:00Z\n# public key: age1xyz\nAGE-SECRET-KEY-1QQQQ\n"
    assert msgspec.convert({"identity": keygen}, RestoreRequest).identity == keygen
    for bad in ("", "age1publickeyinstead", "-----BEGIN PRIVATE KEY-----"):
        with pytest.raises(msgspec.ValidationError):
            msgspec.convert({"identity": bad}, RestoreRequest)


@pytest.mark.parametrize("backup_id", ["..", "../etc", "20261129T050000Z-abcdef/../x", "x", "20261129T050000Z"])
def test_backup_ids_never_leave_the_backup_directory(tmp_path: Path, backup_id: str) -> None:
    with pytest.raises(NotFound):
        backup_path(tmp_path, backup_id)


def test_libpq_target_moves_the_password_into_a_private_passfile(tmp_path: Path) -> None:
    """pg_dump and pg_restore get a conninfo without the password: nothing secret is visible in `ps`."""
    target = libpq_target("host=127.0.0.1 port=5432 dbname=d user=mipo_owner password='p:a\\\\ss w'", tmp_path, "x")
    params = conninfo_to_dict(target)
    assert "password" not in params and "p:a" not in target
    passfile = Path(str(params["passfile"]))
    assert passfile.parent == tmp_path
    assert stat.S_IMODE(passfile.stat().st_mode) == 0o600
    assert passfile.read_text() == "*:*:*:*:p\\:a\\\\ss w\n"
