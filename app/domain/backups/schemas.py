"""The signed manifest of a backup and what the backup API returns."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

MANIFEST_FORMAT = 1
# The header carrying the manager's shared secret to the backup API.
API_TOKEN_HEADER = "X-Mipo-Backup-Token"  # noqa: S105 - a header name, not a secret


class GrantManifest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """One entry of a database's ACL (aclexplode): grantee None is PUBLIC."""

    grantee: str | None
    privilege: str            # CONNECT, CREATE or TEMPORARY
    grantable: bool


class ShapeManifest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """What a dump does not carry: the database's owner, encoding, locale and ACL when it was backed up."""

    owner: str
    encoding: str
    collate: str
    ctype: str
    acl: list[GrantManifest] | None  # None: datacl was NULL (PostgreSQL's defaults)


class DatabaseManifest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """One database in a backup: its encrypted dump file and what was in it."""

    name: str                 # config, jobs or results
    file: str                 # e.g. "results.dump.age", relative to the backup's directory
    sha256: str               # of the encrypted file, hex
    encrypted_bytes: int
    database_bytes: int       # pg_database_size() when dumped
    server_version_num: int   # e.g. 170006
    timescaledb: str | None   # extension version, None when not installed
    row_counts: dict[str, int]  # every table of schema public, counted in the dump's own snapshot
    # Absent in backups made before it was recorded: they still decode and verify (the signature covers
    # the bytes as written); a restore into a missing database then falls back to a closed ACL.
    shape: ShapeManifest | None = None


class Manifest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Signed by the backup service; a restore trusts nothing the signature does not cover."""

    format: int
    backup_id: str
    created_at: datetime
    recipient: str
    databases: list[DatabaseManifest]

    def database(self, name: str) -> DatabaseManifest | None:
        return next((d for d in self.databases if d.name == name), None)


class BackupRead(msgspec.Struct):
    id: str
    created_at: datetime
    total_bytes: int
    databases: list[str]
    # Signature and file sizes checked; full checksums are checked before a restore.
    signature_valid: bool


OperationKind = Literal["backup", "restore"]
OperationState = Literal["running", "succeeded", "failed"]


class OperationRead(msgspec.Struct):
    id: str
    kind: OperationKind
    state: OperationState
    started_at: datetime
    backup_id: str | None = None
    finished_at: datetime | None = None
    reason: str | None = None
    message: str | None = None


class StatusRead(msgspec.Struct):
    operation: OperationRead | None
    latest_backup: BackupRead | None
    fresh: bool
    freshness_hours: float


class RestoreRequest(msgspec.Struct, forbid_unknown_fields=True):
    """The age identity is used for this one restore and never stored."""

    identity: str

    def __post_init__(self) -> None:
        # age-keygen's output (comment lines and the key) is accepted as it is.
        if not any(line.strip().startswith("AGE-SECRET-KEY-1") for line in self.identity.splitlines()):
            raise ValueError("identity: expected an age identity starting with AGE-SECRET-KEY-1")
