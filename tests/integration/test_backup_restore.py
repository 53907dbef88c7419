"""Restore drill: fill all three databases, back up, wipe, restore — every table comes back identical."""

from __future__ import annotations

import asyncio
from pathlib import Path

import psycopg
import pytest

from app.domain.backups import service
from app.domain.backups.storage import list_backup_ids
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
    settings_db_names,
    table_fingerprints,
)
from tests.support.postgres import PostgresServer


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
