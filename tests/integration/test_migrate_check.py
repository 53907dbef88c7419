"""`migrate --check` and `create-admin --if-no-users`: what the deploy needs to decide from the databases' state."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg

from app.__main__ import EXIT_PENDING
from app.db.connect import conninfo
from app.db.migrate import migration_files
from tests.conftest import SettingsFactory
from tests.support.postgres import PostgresServer
from tests.support.services import write_toml
from tests.support.settings import settings_document


def _app(config: Path, credentials_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"CREDENTIALS_DIRECTORY": str(credentials_dir), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "app", "--config", str(config), *args], env=env,
                          capture_output=True, text=True, check=False)


def test_migrate_check_reports_pending_without_applying(pg: PostgresServer, databases: dict[str, str],
                                                        credentials_dir: Path, tmp_path: Path,
                                                        settings_for: SettingsFactory) -> None:
    """Fresh databases: --check names every migration and exits EXIT_PENDING, applying nothing; after
    `migrate` it exits 0; one migration missing again → pending again, naming only that one."""
    config = write_toml(settings_document(pg, databases, "mipo_manager"), tmp_path / "mipo.toml")
    fresh = _app(config, credentials_dir, "migrate", "--check")
    assert fresh.returncode == EXIT_PENDING, fresh.stderr
    lines = fresh.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == ["config", "jobs", "results"]
    for line, which in zip(lines, ("config", "jobs", "results"), strict=True):
        assert line == f"{which}: pending " + ", ".join(name for name, _ in migration_files(which))  # type: ignore[arg-type]
    settings = settings_for()
    with psycopg.connect(conninfo(settings, "config", as_owner=True)) as conn:
        table = conn.execute("SELECT to_regclass('mipo_schema_migrations')").fetchone()
    assert table == (None,), "--check created the migrations table"

    assert _app(config, credentials_dir, "migrate").returncode == 0
    done = _app(config, credentials_dir, "migrate", "--check")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines() == ["config: up to date", "jobs: up to date", "results: up to date"]

    last = migration_files("jobs")[-1][0]
    with psycopg.connect(conninfo(settings, "jobs", as_owner=True), autocommit=True) as conn:
        conn.execute("DELETE FROM mipo_schema_migrations WHERE name = %s", (last,))
    again = _app(config, credentials_dir, "migrate", "--check")
    assert again.returncode == EXIT_PENDING and f"jobs: pending {last}\n" in again.stdout, again.stdout


def test_migrate_check_fails_on_an_edited_migration_or_a_missing_database(
    pg: PostgresServer, databases: dict[str, str], credentials_dir: Path, tmp_path: Path, migrated: SettingsFactory,
) -> None:
    """Exit 1 (cannot tell), not 0 or EXIT_PENDING, when an applied migration was edited or a database is gone."""
    config = write_toml(settings_document(pg, databases, "mipo_manager"), tmp_path / "mipo.toml")
    with psycopg.connect(conninfo(migrated(), "results", as_owner=True), autocommit=True) as conn:
        conn.execute("UPDATE mipo_schema_migrations SET checksum = 'x' WHERE name = '0001_initial.sql'")
    edited = _app(config, credentials_dir, "migrate", "--check")
    assert edited.returncode == 1 and "was changed after it was applied" in edited.stderr, edited.stderr

    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{databases["config"]}" WITH (FORCE)')
    gone = _app(config, credentials_dir, "migrate", "--check")
    assert gone.returncode == 1 and "migrate --check failed" in gone.stderr, gone.stderr


def test_create_admin_if_no_users_creates_only_into_an_empty_config_database(
    pg: PostgresServer, databases: dict[str, str], credentials_dir: Path, tmp_path: Path, migrated: SettingsFactory,
) -> None:
    """--if-no-users: the first admin into a database without users; once any user exists nothing is created,
    and an existing admin's password is never overwritten (with or without the flag)."""
    config = write_toml(settings_document(pg, databases, "mipo_manager"), tmp_path / "mipo.toml")
    first, other = tmp_path / "first", tmp_path / "other"
    first.write_text("initial-admin-password-1\n")
    other.write_text("another-password-2222\n")
    dsn = conninfo(migrated(), "config", as_owner=True)

    made = _app(config, credentials_dir, "create-admin", "--password-file", str(first), "--if-no-users")
    assert made.returncode == 0 and "created admin 'admin'" in made.stdout, made.stdout + made.stderr
    with psycopg.connect(dsn) as conn:
        before = conn.execute("SELECT username, password_hash, must_change_password FROM users").fetchall()
    assert [(u, must) for u, _, must in before] == [("admin", True)]

    for extra in (["--if-no-users"], []):
        again = _app(config, credentials_dir, "create-admin", "--password-file", str(other), *extra)
        assert again.returncode == 0, again.stderr
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT username, password_hash, must_change_password FROM users").fetchall() == before

    # Users exist but none is named admin: the flag still creates nobody.
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("UPDATE users SET username = 'renamed'")
    skipped = _app(config, credentials_dir, "create-admin", "--password-file", str(other), "--if-no-users")
    assert skipped.returncode == 0 and "no first admin created" in skipped.stdout, skipped.stdout
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT username FROM users").fetchall() == [("renamed",)]
