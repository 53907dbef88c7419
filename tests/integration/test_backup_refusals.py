"""A restore refuses a damaged, forged or incompatible backup before it touches any database."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pyrage
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.config import Settings
from app.domain.backups import service
from app.domain.backups.schemas import Manifest
from app.domain.backups.signing import load_signing_key
from app.domain.backups.storage import MANIFEST, SIGNATURE, hash_file, new_backup_id
from app.errors import Invalid
from tests.conftest import SettingsFactory
from tests.integration.backup_support import (
    BackupKit,
    database_identity,
    fill_jobs_and_results,
    make_kit,
    set_aside_restore_event,
    settings_db_names,
    table_fingerprints,
)
from tests.support.postgres import PostgresServer

Mutation = Callable[[Path, Manifest], Manifest | None]


def _copy(settings: Settings, kit: BackupKit, original: str, mutate: Mutation, *,
          key: Ed25519PrivateKey | None, keep_signature: bool = False) -> str:
    """A copy of a good backup under a new id, changed by `mutate`, then signed with `key` (or not)."""
    new_id = new_backup_id(datetime.now(UTC))
    target = kit.directory / new_id
    shutil.copytree(kit.directory / original, target)
    manifest = msgspec.json.decode((target / MANIFEST).read_bytes(), type=Manifest)
    manifest = msgspec.structs.replace(manifest, backup_id=new_id)
    manifest = mutate(target, manifest) or manifest
    data = msgspec.json.encode(manifest)
    if keep_signature:  # the signature of some other manifest: must not verify
        changed = data.replace(b'"observations":714', b'"observations":715')
        assert changed != data
        data = changed
    (target / MANIFEST).write_bytes(data)
    (target / SIGNATURE).unlink()
    if key is not None:
        (target / SIGNATURE).write_bytes(key.sign(msgspec.json.encode(manifest)))
    return new_id


def _truncate(path: Path, manifest: Manifest) -> None:
    file = path / "results.dump.age"
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])


def _flip_bit(path: Path, manifest: Manifest) -> None:
    file = path / "jobs.dump.age"
    data = bytearray(file.read_bytes())
    data[len(data) // 2] ^= 0x10
    file.write_bytes(bytes(data))


def _flip_bit_and_rehash(path: Path, manifest: Manifest) -> Manifest:
    """Damage the checksum cannot see (the manifest is re-signed): age's authentication must."""
    _flip_bit(path, manifest)
    digest, size = hash_file(path / "jobs.dump.age")
    return msgspec.structs.replace(manifest, databases=[
        msgspec.structs.replace(d, sha256=digest, encrypted_bytes=size) if d.name == "jobs" else d
        for d in manifest.databases])


def _other_timescaledb(path: Path, manifest: Manifest) -> Manifest:
    return msgspec.structs.replace(manifest, databases=[
        msgspec.structs.replace(d, timescaledb="2.0.0") if d.name == "results" else d for d in manifest.databases])


def _forge(recipient: str) -> Mutation:
    """Replace every dump by the forger's own content, encrypted to the right recipient, hashes fixed."""
    def mutate(path: Path, manifest: Manifest) -> Manifest:
        entries = []
        for d in manifest.databases:
            (path / d.file).write_bytes(pyrage.encrypt(b"DROP TABLE users; -- forged",
                                                       [pyrage.x25519.Recipient.from_str(recipient)]))
            digest, size = hash_file(path / d.file)
            entries.append(msgspec.structs.replace(d, sha256=digest, encrypted_bytes=size))
        return msgspec.structs.replace(manifest, databases=entries)
    return mutate


def test_damaged_forged_or_incompatible_backups_are_refused_before_any_database_is_touched(
        pg: PostgresServer, migrated: SettingsFactory, credentials_dir: Path, tmp_path: Path) -> None:
    """Truncated file, flipped bit, wrong identity, bad or missing signature, other TimescaleDB version:
    each restore is refused with its reason, and no database is dropped or changed."""
    kit = make_kit(pg, credentials_dir, tmp_path)
    settings = migrated("mipo_backup", **kit.overrides)
    names = settings_db_names(settings)
    from app.db.connect import conninfo
    fill_jobs_and_results({k: conninfo(settings, k, as_owner=True) for k in names})  # type: ignore[misc]
    good = asyncio.run(service.create_backup(settings)).backup_id
    key = load_signing_key(settings)
    identities = database_identity(pg, names)
    fingerprints = {k: table_fingerprints(pg, v) for k, v in names.items()}
    nothing: Mutation = lambda path, manifest: None  # noqa: E731

    cases: list[tuple[str, str, str]] = [
        ("truncated file", _copy(settings, kit, good, _truncate, key=key), "checksum_mismatch"),
        ("flipped bit", _copy(settings, kit, good, _flip_bit, key=key), "checksum_mismatch"),
        ("flipped bit, checksum re-signed", _copy(settings, kit, good, _flip_bit_and_rehash, key=key),
         "decryption_failed"),
        ("manifest changed after signing", _copy(settings, kit, good, nothing, key=key, keep_signature=True),
         "signature_invalid"),
        ("other TimescaleDB version", _copy(settings, kit, good, _other_timescaledb, key=key), "version_mismatch"),
        ("forged, encrypted to the recipient, unsigned", _copy(settings, kit, good, _forge(kit.recipient), key=None),
         "signature_missing"),
        ("forged, signed by another key",
         _copy(settings, kit, good, _forge(kit.recipient), key=Ed25519PrivateKey.generate()), "signature_invalid"),
    ]
    wrong_identity = str(pyrage.x25519.Identity.generate())
    attempts = [(what, backup_id, kit.identity, reason) for what, backup_id, reason in cases]
    attempts.append(("wrong identity", good, wrong_identity, "decryption_failed"))

    for what, backup_id, identity, reason in attempts:
        with pytest.raises(Invalid) as refused:
            asyncio.run(service.restore_backup(settings, backup_id, identity))
        assert refused.value.reason == reason, f"{what}: {refused.value}"
        assert database_identity(pg, names) == identities, f"{what}: a database was recreated"
        assert {k: table_fingerprints(pg, v) for k, v in names.items()} == fingerprints, f"{what}: data changed"
        # Decrypted dumps never outlive the attempt.
        assert list((kit.directory / ".work").iterdir()) == [], what

    # The good backup still restores: the refusals were about the damage, not the setup.
    asyncio.run(service.restore_backup(settings, good, kit.identity))
    set_aside_restore_event(pg, names["config"], good, fingerprints["config"])
    assert {k: table_fingerprints(pg, v) for k, v in names.items()} == fingerprints
