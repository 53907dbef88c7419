"""The three databases on real PostgreSQL 17 + TimescaleDB: versions, hypertable, migrations, grants."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from app.db.connect import conninfo
from app.db.migrate import migrate_all
from tests.conftest import SettingsFactory
from tests.support.postgres import PostgresServer
from tests.support.services import write_toml
from tests.support.settings import settings_document


def test_server_is_postgresql_17_with_timescaledb(pg: PostgresServer, migrated: SettingsFactory) -> None:
    """The integration tier runs on the real server the appliance uses, not a stand-in."""
    version = pg.version()
    print("server:", version)
    assert version.startswith("PostgreSQL 17.")
    with psycopg.connect(conninfo(migrated("mipo_manager"), "results")) as conn:
        ext = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
        assert ext is not None
        print("timescaledb:", ext[0])
        assert ext[0].startswith("2.")
        tables = {r[0] for r in conn.execute(
            "SELECT hypertable_name FROM timescaledb_information.hypertables").fetchall()}
    assert "observations" in tables


def test_migrate_twice_changes_nothing(pg: PostgresServer, databases: dict[str, str],
                                       credentials_dir: Path, tmp_path: Path) -> None:
    """`python -m app migrate` is idempotent and says what it did each time."""
    config = write_toml(settings_document(pg, databases, "mipo_manager"), tmp_path / "mipo.toml")
    env = {"CREDENTIALS_DIRECTORY": str(credentials_dir), "PATH": "/usr/bin:/bin"}
    cmd = [sys.executable, "-m", "app", "--config", str(config), "migrate"]
    first = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    assert first.returncode == 0, first.stderr
    assert [line.split(":")[0] for line in first.stdout.splitlines()] == ["config", "jobs", "results"]
    assert all(": applied 0001_initial.sql" in line for line in first.stdout.splitlines()), first.stdout
    second = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    assert second.returncode == 0, second.stderr
    lines = second.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == ["config", "jobs", "results"], second.stdout
    assert all(": up to date (" in line for line in lines), second.stdout


def test_edited_migration_is_refused(migrated: SettingsFactory) -> None:
    """An applied migration that changed on disk stops migrate instead of silently diverging."""
    settings = migrated()
    with psycopg.connect(conninfo(settings, "jobs", as_owner=True), autocommit=True) as conn:
        conn.execute("UPDATE mipo_schema_migrations SET checksum = 'x' WHERE name = '0001_initial.sql'")
    with pytest.raises(Exception, match="was changed after it was applied"):
        migrate_all(settings)


@pytest.mark.parametrize("statement", [
    "UPDATE observations SET port = 1",
    "DELETE FROM observations",
    "UPDATE ingested_batches SET rows = 0",
    "DELETE FROM ingested_batches",
    "TRUNCATE observations",
])
def test_ingest_role_cannot_rewrite_results(migrated: SettingsFactory, statement: str) -> None:
    """Ingest may append results but never change or remove history."""
    with psycopg.connect(conninfo(migrated("mipo_ingest"), "results")) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
            conn.execute(statement)


def test_ingest_role_can_insert_observations(migrated: SettingsFactory) -> None:
    """The grant that ingest needs is present (the refusals above are not a broken login)."""
    with psycopg.connect(conninfo(migrated("mipo_ingest"), "results")) as conn:
        conn.execute("INSERT INTO observations (time, run_id, job_id, scanner_id, ip, port)"
                     " VALUES (now(), 1, 1, 1, '198.18.0.20', 22)")


@pytest.mark.parametrize(("role", "database", "statement"), [
    ("mipo_manager", "jobs", "UPDATE jobs SET status = 'failed'"),
    ("mipo_manager", "results", "INSERT INTO port_changes (run_id, scanner_id, ip, port, change)"
                                " VALUES (1, 1, '198.18.0.1', 1, 'opened')"),
    ("mipo_manager", "config", "UPDATE audit_log SET actor = 'x'"),
    ("mipo_manager", "config", "DELETE FROM audit_log"),
    ("mipo_ingest", "config", "SELECT * FROM users"),
    ("mipo_ingest", "config", "SELECT * FROM audit_log"),
    ("mipo_dispatcher", "config", "UPDATE users SET role = 'admin'"),
    ("mipo_backup", "config", "DELETE FROM users"),
])
def test_service_roles_are_least_privilege(migrated: SettingsFactory, role: str, database: str,
                                           statement: str) -> None:
    """Each service role holds only the privileges its role needs."""
    with psycopg.connect(conninfo(migrated(role), database)) as conn:  # type: ignore[arg-type]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement)
