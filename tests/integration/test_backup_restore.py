"""Restore drill: fill all three databases, back up, wipe, restore — every table comes back identical."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pytest

from app.domain.backups import service
from app.domain.backups.signing import load_signing_key, sign
from app.domain.backups.storage import MANIFEST, SIGNATURE, list_backup_ids
from app.domain.events.service import emit
from app.domain.scanners.schemas import ScannerCreate
from app.domain.scanners.service import create_scanner
from app.domain.users.schemas import UserCreate
from app.domain.users.service import create_user
from app.errors import Invalid
from tests.conftest import SettingsFactory
from tests.integration.backup_support import (
    database_identity,
    fill_jobs_and_results,
    make_kit,
    set_aside_restore_event,
    settings_db_names,
    table_fingerprints,
)
from tests.support.postgres import PostgresServer, role_password


async def _fill_config(settings_conninfo: str, settings: object) -> None:
    """Users, scanners (with enrolment tokens) and events through the product's own services."""
    async with await psycopg.AsyncConnection.connect(settings_conninfo) as conn:
        for i in range(5):
            await create_user(conn, "drill", UserCreate(f"user{i}", f"a long passphrase number {i}!",
                                                        role="operator"))
        for name in ("scanner-a", "scanner-b"):
            await create_scanner(conn, settings, "drill", ScannerCreate(name))  # type: ignore[arg-type]
        await emit(conn, "drill", "an event from before the backup", severity="warning", details={"n": 1})


def test_backup_wipe_restore_gives_back_every_table(pg: PostgresServer, migrated: SettingsFactory,
                                                    credentials_dir: Path, tmp_path: Path) -> None:
    """Backup → drop and recreate every database as provisioning does → restore: identical tables,
    sequences, TimescaleDB chunks, privileges; services can log in and write again."""
    kit = make_kit(pg, credentials_dir, tmp_path)
    settings = migrated("mipo_backup", **kit.overrides)
    manager = migrated("mipo_manager", **kit.overrides)
    names = settings_db_names(settings)
    from app.db.connect import conninfo
    asyncio.run(_fill_config(conninfo(manager, "config"), manager))
    fill_jobs_and_results({k: conninfo(settings, k, as_owner=True) for k in names})  # type: ignore[misc]

    before = {k: table_fingerprints(pg, v) for k, v in names.items()}
    assert before["results"]["observations"][0] == 3 * 119 * 2
    assert before["config"]["users"][0] == 5
    chunks_before = _chunks(pg, names["results"])
    assert chunks_before >= 3

    manifest = asyncio.run(service.create_backup(settings))
    assert list_backup_ids(kit.directory) == [manifest.backup_id]
    results_entry = manifest.database("results")
    assert results_entry is not None and results_entry.timescaledb
    assert results_entry.row_counts["observations"] == 3 * 119 * 2
    # Nothing readable in clear: the files are age-encrypted.
    for db in manifest.databases:
        head = (kit.directory / manifest.backup_id / db.file).read_bytes()[:40]
        assert head.startswith(b"age-encryption.org/v1")

    # Wipe: drop every database and create it empty again, exactly as provisioning would.
    prefix = names["config"].removesuffix("mipo_config")
    pg.create_appliance_databases(prefix=prefix)
    assert table_fingerprints(pg, names["config"]) == {}

    asyncio.run(service.restore_backup(settings, manifest.backup_id, kit.identity))

    set_aside_restore_event(pg, names["config"], manifest.backup_id, before["config"])
    after = {k: table_fingerprints(pg, v) for k, v in names.items()}
    for k in names:
        assert after[k] == before[k], f"{k} differs after restore"
    assert _chunks(pg, names["results"]) == chunks_before
    with psycopg.connect(pg.dsn(names["results"])) as conn:  # timescaledb_post_restore() ran
        assert conn.execute("SHOW timescaledb.restoring").fetchone() == ("off",)

    # The appliance works afterwards: each service role logs in with its usual grants.
    with psycopg.connect(conninfo(manager, "config")) as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone() == (5,)
        conn.execute("INSERT INTO events (class, message) VALUES ('after_restore', 'manager writes')")
    ingest = migrated("mipo_ingest", **kit.overrides)
    with psycopg.connect(conninfo(ingest, "results")) as conn:
        conn.execute("INSERT INTO observations (time, run_id, job_id, scanner_id, ip, port)"
                     " VALUES (now(), 99, 99, 1, '198.18.0.9', 443)")
    with psycopg.connect(conninfo(manager, "results")) as conn:
        assert conn.execute("SELECT count(*) FROM observations WHERE run_id = 99").fetchone() == (1,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM observations")


def _chunks(server: PostgresServer, dbname: str) -> int:
    with psycopg.connect(server.dsn(dbname)) as conn:
        row = conn.execute("SELECT count(*) FROM timescaledb_information.chunks"
                           " WHERE hypertable_name = 'observations'").fetchone()
        assert row is not None
        return int(row[0])


def test_no_recipient_refuses_and_writes_nothing(pg: PostgresServer, migrated: SettingsFactory,
                                                 credentials_dir: Path, tmp_path: Path) -> None:
    """Without an age recipient there is no backup at all — never one in clear."""
    kit = make_kit(pg, credentials_dir, tmp_path, recipient="")
    settings = migrated("mipo_backup", **kit.overrides)
    with pytest.raises(Invalid) as refused:
        asyncio.run(service.create_backup(settings))
    assert refused.value.reason == "recipient_missing"
    assert [p for p in kit.directory.rglob("*") if p.is_file()] == []
    assert database_identity(pg, settings_db_names(settings))  # databases untouched and present


def _acl(server: PostgresServer, dbname: str) -> set[tuple[str, str, bool]]:
    """A database's ACL as (grantee or PUBLIC, privilege, grantable), NULL datacl made explicit."""
    with psycopg.connect(server.dsn()) as conn:
        rows = conn.execute(
            "SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END,"
            " a.privilege_type, a.is_grantable FROM pg_database d,"
            " aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a WHERE d.datname = %s",
            (dbname,)).fetchall()
    return {(str(g), str(p), bool(o)) for g, p, o in rows}


STRANGERS = ("mipo_stranger", "mipo_gone")


def _connects(server: PostgresServer, role: str, dbname: str) -> bool:
    """Whether `role` may really log in to `dbname` (a role outside every grant is PUBLIC)."""
    try:
        password = role_password(role) if role.startswith("mipo_") and role not in STRANGERS else f"{role}-pw"
        with psycopg.connect(server.dsn(dbname, user=role, password=password)):
            return True
    except psycopg.OperationalError as exc:
        assert "permission denied" in str(exc), exc
        return False


def test_restore_into_lost_databases_gives_back_their_acl(pg: PostgresServer, migrated: SettingsFactory,
                                                          credentials_dir: Path, tmp_path: Path) -> None:
    """Disaster: the databases are gone. The restore recreates them with the ACL recorded at backup time
    (grants to vanished roles skipped), never PostgreSQL's open default; an old manifest without the
    record still verifies and gets a closed ACL (owner only)."""
    kit = make_kit(pg, credentials_dir, tmp_path)
    settings = migrated("mipo_backup", **kit.overrides)
    names = settings_db_names(settings)
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        for role in STRANGERS:
            conn.execute(f"DROP ROLE IF EXISTS {role}")
            conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{role}-pw'")
        for db in names.values():
            # As provisioning (db-roles.sql.j2) leaves it: PUBLIC revoked, the service roles may connect.
            conn.execute(f'REVOKE ALL ON DATABASE "{db}" FROM PUBLIC')
            conn.execute(f'GRANT CONNECT, TEMPORARY ON DATABASE "{db}" TO mipo_manager, mipo_ingest,'
                         ' mipo_dispatcher, mipo_backup')
            conn.execute(f'GRANT CONNECT ON DATABASE "{db}" TO mipo_gone WITH GRANT OPTION')
    before = {k: _acl(pg, v) for k, v in names.items()}
    assert all(not _connects(pg, "mipo_stranger", v) for v in names.values())

    manifest = asyncio.run(service.create_backup(settings))
    entry = manifest.database("config")
    assert entry is not None and entry.shape is not None and entry.shape.owner == "mipo_owner"

    def lose_everything() -> None:
        with psycopg.connect(pg.dsn(), autocommit=True) as conn:
            for db in names.values():
                conn.execute(f'DROP DATABASE "{db}" WITH (FORCE)')
            conn.execute("DROP ROLE IF EXISTS mipo_gone")

    lose_everything()
    asyncio.run(service.restore_backup(settings, manifest.backup_id, kit.identity))
    for k, db in names.items():
        expected = {a for a in before[k] if a[0] != "mipo_gone"}
        assert _acl(pg, db) == expected, k
        assert not any(g == "PUBLIC" for g, _, _ in _acl(pg, db))
        assert not _connects(pg, "mipo_stranger", db)
    from app.db.connect import conninfo
    with psycopg.connect(conninfo(settings, "jobs")) as conn:  # a service role still logs in
        assert conn.execute("SELECT 1").fetchone() == (1,)
    # The skipped grants are told to operators as an event, not only in the journal.
    (severity, details), = _redeploy_events(pg, names["config"])
    assert severity == "warning" and details["backup_id"] == manifest.backup_id
    assert details["databases"] == ["config", "jobs", "results"] and details["hint"] == service.REDEPLOY_HINT
    assert all("mipo_gone" in reason for reason in details["reasons"].values())

    # A backup made before shapes were recorded: the field is absent, the signature still verifies.
    backup_dir = kit.directory / manifest.backup_id
    old = msgspec.json.decode((backup_dir / MANIFEST).read_bytes())
    for db in old["databases"]:
        db.pop("shape")
    data = msgspec.json.encode(old)
    (backup_dir / MANIFEST).write_bytes(data)
    (backup_dir / SIGNATURE).write_bytes(sign(load_signing_key(settings), data))
    lose_everything()
    asyncio.run(service.restore_backup(settings, manifest.backup_id, kit.identity))
    for db in names.values():
        assert _acl(pg, db) == {("mipo_owner", p, False) for p in ("CONNECT", "CREATE", "TEMPORARY")}
        assert not _connects(pg, "mipo_stranger", db)
        assert not _connects(pg, "mipo_manager", db)  # until a redeploy re-applies the connect rules
    # ... which operators learn from an event naming the databases (written although no service can connect),
    # next to the event of the restore itself.
    (severity, details), = _redeploy_events(pg, names["config"])
    (restored,), = _events(pg, names["config"], service.RESTORED_EVENT, "details->>'backup_id'")
    assert restored == manifest.backup_id
    assert severity == "warning" and details["backup_id"] == manifest.backup_id
    assert details["databases"] == ["config", "jobs", "results"] and details["hint"] == service.REDEPLOY_HINT
    assert all("predates recorded database ACLs" in reason for reason in details["reasons"].values())


def _events(server: PostgresServer, dbname: str, event_class: str, columns: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(server.dsn(dbname)) as conn:
        return conn.execute(f"SELECT {columns} FROM events WHERE class = %s ORDER BY id",
                            (event_class,)).fetchall()


def _redeploy_events(server: PostgresServer, dbname: str) -> list[tuple[Any, ...]]:
    return _events(server, dbname, service.REDEPLOY_EVENT, "severity, details")
