"""Back up, verify and restore the three databases; retention and the freshness event."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from psycopg import AsyncConnection
from psycopg.conninfo import make_conninfo

from app.config import DatabaseName, Settings
from app.db.connect import DATABASE_NAMES, conninfo
from app.domain.backups import repository as repo
from app.domain.backups import signing, storage, tools
from app.domain.backups.retention import expired_backups
from app.domain.backups.schemas import (
    MANIFEST_FORMAT,
    BackupRead,
    DatabaseManifest,
    GrantManifest,
    Manifest,
    ShapeManifest,
)
from app.domain.events.service import emit
from app.errors import DomainError, Invalid, Unavailable

log = logging.getLogger("mipo.backup")


def backup_root(settings: Settings) -> Path:
    return Path(settings.backup.directory)


def dump_file_name(which: str) -> str:
    return f"{which}.dump.age"


# --- backup -----------------------------------------------------------------------------------

async def _dump_one(settings: Settings, which: DatabaseName, work: Path, incoming: Path) -> DatabaseManifest:
    owner_conninfo = conninfo(settings, which, as_owner=True)
    out = incoming / dump_file_name(which)
    async with await psycopg.AsyncConnection.connect(owner_conninfo, autocommit=True) as conn:
        snapshot = await repo.export_snapshot(conn)
        try:
            version = await repo.server_version_num(conn)
            timescaledb = await repo.installed_timescaledb(conn)
            size = await repo.database_size(conn)
            # pg_database is readable by every role: the owner records what a restore into a lost
            # database must give back (a dump holds no database-level ACL or locale).
            shape = await repo.database_shape(conn, getattr(settings.databases, which).name)
            counts = await repo.row_counts(conn)
            target = tools.libpq_target(owner_conninfo, work, which)
            await tools.dump_encrypted(settings.backup, target, snapshot, settings.backup.recipient, out)
        finally:
            await conn.execute("ROLLBACK")
    digest, encrypted_bytes = await asyncio.to_thread(storage.hash_file, out)
    return DatabaseManifest(which, out.name, digest, encrypted_bytes, size, version, timescaledb, counts,
                            _shape_manifest(shape) if shape else None)


def _shape_manifest(shape: repo.DatabaseShape) -> ShapeManifest:
    acl = None if shape.acl is None else [GrantManifest(g, p, o) for g, p, o in shape.acl]
    return ShapeManifest(shape.owner, shape.encoding, shape.collate, shape.ctype, acl)


async def create_backup(settings: Settings, *, now: datetime | None = None) -> Manifest:
    """Dump all three databases encrypted to the configured recipient, sign the manifest, publish atomically.

    The caller holds the directory lock. Without a recipient nothing is written at all.
    """
    recipient = settings.backup.recipient
    if not recipient:
        raise Invalid("backup.recipient is not configured: refusing to write a backup that is not encrypted",
                      reason="recipient_missing")
    key = signing.load_signing_key(settings)
    root = backup_root(settings)
    created = now or datetime.now(UTC)
    backup_id = storage.new_backup_id(created)
    storage.ensure_layout(root)
    incoming = root / f"{storage.INCOMING}{backup_id}"
    incoming.mkdir(mode=0o700)
    try:
        with storage.private_workdir(root) as work:
            entries = [await _dump_one(settings, which, work, incoming) for which in DATABASE_NAMES]
        manifest = Manifest(MANIFEST_FORMAT, backup_id, created, recipient, entries)
        data = msgspec.json.encode(manifest)
        storage.write_file_durably(incoming / storage.MANIFEST, data)
        storage.write_file_durably(incoming / storage.SIGNATURE, signing.sign(key, data))
        await asyncio.to_thread(storage.publish, incoming, root / backup_id)
    except BaseException:
        await asyncio.to_thread(storage.remove_leftovers, root)
        raise
    # Read back what is on disk: a backup is only reported once it verifies.
    await asyncio.to_thread(load_verified_manifest, settings, key, backup_id, checksums=True)
    log.info("backup %s written (%d bytes encrypted)", backup_id, sum(d.encrypted_bytes for d in entries))
    return manifest


# --- verification -----------------------------------------------------------------------------

def load_verified_manifest(settings: Settings, key: Ed25519PrivateKey, backup_id: str, *,
                           checksums: bool) -> Manifest:
    """The manifest of one backup after checking its signature, its shape and its files.

    Blocking (reads whole files when `checksums`); call it in a thread.
    """
    path = storage.backup_path(backup_root(settings), backup_id)
    data = (path / storage.MANIFEST).read_bytes()
    sig_path = path / storage.SIGNATURE
    if not sig_path.is_file():
        raise Invalid(f"backup {backup_id} has no manifest signature: not made by this backup service",
                      reason="signature_missing")
    signing.verify(key, data, sig_path.read_bytes())
    try:
        manifest = msgspec.json.decode(data, type=Manifest)
    except msgspec.DecodeError as exc:
        raise Invalid(f"backup {backup_id}: manifest unreadable: {exc}", reason="manifest_invalid") from None
    if manifest.format != MANIFEST_FORMAT or manifest.backup_id != backup_id:
        raise Invalid(f"backup {backup_id}: manifest is for {manifest.backup_id!r}, format {manifest.format}",
                      reason="manifest_invalid")
    if sorted(d.name for d in manifest.databases) != sorted(DATABASE_NAMES):
        raise Invalid(f"backup {backup_id}: manifest must list exactly the databases {', '.join(DATABASE_NAMES)}",
                      reason="manifest_invalid")
    for db in manifest.databases:
        if db.file != dump_file_name(db.name):
            raise Invalid(f"backup {backup_id}: unexpected file name {db.file!r}", reason="manifest_invalid")
        file = path / db.file
        if not file.is_file() or file.stat().st_size != db.encrypted_bytes:
            raise Invalid(f"backup {backup_id}: {db.file} is missing or has the wrong size",
                          reason="checksum_mismatch")
        if checksums and storage.hash_file(file)[0] != db.sha256:
            raise Invalid(f"backup {backup_id}: {db.file} does not match its SHA-256 in the manifest",
                          reason="checksum_mismatch")
    return manifest


def list_backups(settings: Settings) -> list[BackupRead]:
    """Newest first; a backup whose signature or sizes do not check out is listed as such."""
    root = backup_root(settings)
    key = signing.load_signing_key(settings)
    items: list[BackupRead] = []
    for backup_id in storage.list_backup_ids(root):
        created = storage.backup_time(backup_id)
        try:
            manifest = load_verified_manifest(settings, key, backup_id, checksums=False)
        except DomainError:
            size = sum(p.stat().st_size for p in (root / backup_id).iterdir() if p.is_file())
            items.append(BackupRead(backup_id, created, size, [], False))
            continue
        items.append(BackupRead(backup_id, manifest.created_at, sum(d.encrypted_bytes for d in manifest.databases),
                                [d.name for d in manifest.databases], True))
    return items


def delete_backup(settings: Settings, backup_id: str) -> None:
    """Remove one backup (the caller holds the directory lock)."""
    storage.remove_tree(storage.backup_path(backup_root(settings), backup_id))


# --- restore ----------------------------------------------------------------------------------

def admin_conninfo(settings: Settings, which: DatabaseName, dbname: str) -> str:
    """The restore superuser on the server of one database (maintenance or target database)."""
    backup = settings.backup
    if not backup.admin_user:
        raise Unavailable("backup.admin_user is not set: a restore needs a superuser", reason="restore_not_configured")
    db = getattr(settings.databases, which)
    params: dict[str, str | int] = {
        "host": db.host, "port": db.port, "dbname": dbname, "user": backup.admin_user,
        "sslmode": db.sslmode, "application_name": "mipo-backup-restore", "connect_timeout": 5,
    }
    if backup.admin_password_credential:
        params["password"] = settings.credential(backup.admin_password_credential)
    if db.sslrootcert:
        params["sslrootcert"] = db.sslrootcert
    return make_conninfo("", **params)


async def check_versions(settings: Settings, manifest: Manifest) -> None:
    """Refuse a backup these servers cannot take back as it was made (read-only queries)."""
    for db in manifest.databases:
        which: DatabaseName = db.name  # type: ignore[assignment]
        async with await psycopg.AsyncConnection.connect(admin_conninfo(settings, which, "postgres")) as conn:
            server = await repo.server_version_num(conn)
            available = await repo.available_timescaledb(conn)
        if server // 10000 < db.server_version_num // 10000:
            raise Invalid(f"{db.name}: backup from PostgreSQL {db.server_version_num // 10000}, server runs "
                          f"{server // 10000}: restore on the same or a newer major version", reason="version_mismatch")
        if which == "results" and db.timescaledb is None:
            raise Invalid("results: the backup has no TimescaleDB extension", reason="version_mismatch")
        if db.timescaledb is not None and db.timescaledb != available:
            raise Invalid(f"{db.name}: backup made with TimescaleDB {db.timescaledb}, this server would install "
                          f"{available or 'none'}: restore needs the same extension version", reason="version_mismatch")


REDEPLOY_HINT = "a redeploy (`mipo deploy`) re-applies the appliance's connect rules"
REDEPLOY_EVENT = "backup_redeploy_needed"


async def restore_shape(settings: Settings, db: DatabaseManifest) -> tuple[repo.DatabaseShape, str | None]:
    """The shape a restored database gets (read-only queries; resolved before any database is touched),
    and why it will need a redeploy to get its service privileges back (None: it will not).

    An existing database keeps its current shape. A missing one gets the shape recorded in the manifest,
    minus grants to roles that no longer exist; a backup without that record gets a closed ACL (CONNECT
    for the owner only), never PostgreSQL's open default where PUBLIC may connect.
    """
    which: DatabaseName = db.name  # type: ignore[assignment]
    target = getattr(settings.databases, which)
    async with await psycopg.AsyncConnection.connect(admin_conninfo(settings, which, "postgres"),
                                                     autocommit=True) as admin:
        current = await repo.database_shape(admin, target.name)
        if current is not None:
            return current, None
        template = await repo.template_shape(admin, target.owner)
        recorded = db.shape
        if recorded is None:
            log.warning("%s: database %s is missing and backup predates recorded database ACLs: it is restored "
                        "closed (PUBLIC revoked, CONNECT for the owner %s only); %s", which, target.name,
                        target.owner, REDEPLOY_HINT)
            return (repo.DatabaseShape(target.owner, template.encoding, template.collate, template.ctype,
                                       [(target.owner, "CONNECT", False)]),
                    f"the backup predates recorded database ACLs: restored closed (CONNECT for {target.owner} only)")
        grantees = [g.grantee for g in recorded.acl or [] if g.grantee is not None]
        present = await repo.existing_roles(admin, [recorded.owner, *grantees])
    owner = recorded.owner
    if owner not in present:
        log.warning("%s: recorded owner %s does not exist on the server; the database is created owned by %s",
                    which, owner, target.owner)
        owner = target.owner
    acl: list[tuple[str | None, str, bool]] | None = None
    note: str | None = None
    if recorded.acl is not None:
        acl = [(g.grantee, g.privilege, g.grantable) for g in recorded.acl
               if g.grantee is None or g.grantee in present]
        missing = sorted({g.grantee for g in recorded.acl if g.grantee is not None and g.grantee not in present})
        if missing:
            log.warning("%s: recorded grants to roles that do not exist on the server are skipped: %s; %s",
                        which, ", ".join(missing), REDEPLOY_HINT)
            note = f"recorded grants to roles that do not exist were skipped: {', '.join(missing)}"
    log.info("%s: database %s is missing; recreating it with the owner, locale and ACL recorded at backup time",
             which, target.name)
    return repo.DatabaseShape(owner, recorded.encoding, recorded.collate, recorded.ctype, acl), note


RESTORED_EVENT = "backup_restored"


async def record_restored(settings: Settings, backup_id: str, notes: dict[str, str]) -> None:
    """Tell operators the restore happened and, when some restored database waits for a redeploy to get its
    service privileges back, which ones and why (an event, not only the journal).

    Written as the restore superuser: the service roles may be exactly what cannot connect yet. Best
    effort, like the other backup events: the restore itself is done and must not be reported failed.
    """
    target = settings.databases.config.name
    try:
        async with await psycopg.AsyncConnection.connect(admin_conninfo(settings, "config", target)) as conn:
            await emit(conn, RESTORED_EVENT, f"backup {backup_id} restored", severity="warning",
                       details={"backup_id": backup_id})
            if notes:
                await emit(conn, REDEPLOY_EVENT,
                           f"backup {backup_id} restored; privileges of {', '.join(notes)} still need re-applying: "
                           f"{REDEPLOY_HINT}", severity="warning",
                           details={"backup_id": backup_id, "databases": sorted(notes), "reasons": notes,
                                    "hint": REDEPLOY_HINT})
    except psycopg.Error as exc:
        log.warning("could not record the events of restoring backup %s: %s", backup_id, exc)


async def _restore_one(settings: Settings, db: DatabaseManifest, shape: repo.DatabaseShape, dump: Path,
                       work: Path) -> None:
    which: DatabaseName = db.name  # type: ignore[assignment]
    target = getattr(settings.databases, which)
    async with await psycopg.AsyncConnection.connect(admin_conninfo(settings, which, "postgres"),
                                                     autocommit=True) as admin:
        await repo.recreate_fenced(admin, target.name, shape)
        target_conninfo = admin_conninfo(settings, which, target.name)
        async with await psycopg.AsyncConnection.connect(target_conninfo, autocommit=True) as conn:
            if db.timescaledb is not None:
                await repo.create_timescaledb(conn)
                await repo.timescaledb_pre_restore(conn)
            try:
                await tools.restore_archive(settings.backup, tools.libpq_target(target_conninfo, work, f"r-{which}"),
                                            dump)
            finally:
                if db.timescaledb is not None:
                    await repo.timescaledb_post_restore(conn)
            counts = await repo.row_counts(conn)
        if counts != db.row_counts:
            raise Invalid(f"{which}: restored row counts differ from the manifest; the database stays closed to "
                          "services", reason="restore_incomplete")
        await repo.reopen(admin, target.name, shape)


async def restore_backup(settings: Settings, backup_id: str, identity: str) -> Manifest:
    """Verify everything (signature, versions, checksums, decryption, archive) before touching a database.

    Then each database is recreated closed to the services, restored with --exit-on-error (results
    between timescaledb_pre_restore and _post_restore), its row counts checked, and reopened.
    """
    key = signing.load_signing_key(settings)
    manifest = await asyncio.to_thread(load_verified_manifest, settings, key, backup_id, checksums=False)
    await check_versions(settings, manifest)
    root = backup_root(settings)
    with storage.private_workdir(root) as work:
        # Checksums are taken on private copies, so the bytes decrypted are the bytes checked.
        copies: dict[str, Path] = {}
        for db in manifest.databases:
            copy = work / db.file
            digest, size = await asyncio.to_thread(storage.copy_and_hash, root / backup_id / db.file, copy)
            if (digest, size) != (db.sha256, db.encrypted_bytes):
                raise Invalid(f"backup {backup_id}: {db.file} does not match its SHA-256 in the manifest",
                              reason="checksum_mismatch")
            copies[db.name] = copy
        dumps: dict[str, Path] = {}
        for db in manifest.databases:
            out = work / f"{db.name}.dump"
            await tools.decrypt(settings.backup, identity, copies[db.name], out)
            copies[db.name].unlink()
            await tools.check_archive(settings.backup, out)
            dumps[db.name] = out
        shaped = {which: await restore_shape(settings, entry) for which in DATABASE_NAMES
                   if (entry := manifest.database(which)) is not None}
        # Nothing above wrote to a database; from here on each one is replaced in turn.
        for which in DATABASE_NAMES:
            entry = manifest.database(which)
            assert entry is not None
            log.info("restoring %s from backup %s", which, backup_id)
            await _restore_one(settings, entry, shaped[which][0], dumps[which], work)
    log.info("backup %s restored", backup_id)
    # Only now: the config database the event goes into is the restored one, not the one it replaced.
    notes: dict[str, str] = {which: note for which, (_, note) in shaped.items() if note is not None}
    await record_restored(settings, backup_id, notes)
    return manifest


# --- retention and freshness ------------------------------------------------------------------

def prune(settings: Settings, *, now: datetime | None = None) -> list[str]:
    """Delete backups beyond keep_count or older than keep_days (the caller holds the lock)."""
    root = backup_root(settings)
    storage.remove_leftovers(root)
    ids = storage.list_backup_ids(root)
    doomed = expired_backups([(i, storage.backup_time(i)) for i in ids], settings.backup.keep_count,
                             settings.backup.keep_days, now or datetime.now(UTC))
    for backup_id in doomed:
        storage.remove_tree(root / backup_id)
        log.info("backup %s removed by retention", backup_id)
    return doomed


async def newest_verified(settings: Settings) -> Manifest | None:
    key = signing.load_signing_key(settings)
    for backup_id in storage.list_backup_ids(backup_root(settings)):
        try:
            return await asyncio.to_thread(load_verified_manifest, settings, key, backup_id, checksums=True)
        except DomainError as exc:
            log.warning("backup %s does not verify: %s", backup_id, exc)
    return None


async def check_freshness(settings: Settings, config_conn: AsyncConnection, *, now: datetime | None = None) -> bool:
    """True when backups are not stale: a verified backup is younger than freshness_hours, or there is none
    yet but the appliance itself is younger than that. Otherwise raise `backup_stale` (once per freshness
    window, not on every check)."""
    now = now or datetime.now(UTC)
    window = timedelta(hours=settings.backup.freshness_hours)
    newest = await newest_verified(settings)
    if newest is not None and newest.created_at >= now - window:
        return True
    if newest is None:
        # A fresh deploy has had no chance to back up yet (the timer runs once a day): not an alarm.
        born = await repo.appliance_created_at(config_conn)
        if born is None or born >= now - window:
            return True
    if not await repo.recent_event_exists(config_conn, "backup_stale", now - window):
        last = f"the newest verified backup is {newest.backup_id}" if newest else "there is no verified backup"
        await emit(config_conn, "backup_stale",
                   f"no verified backup younger than {settings.backup.freshness_hours:g} h: {last}",
                   severity="critical",
                   details={"newest_verified": newest.backup_id if newest else None,
                            "freshness_hours": settings.backup.freshness_hours})
    return False
