"""Apply each database's migration tree in order, once, and report what was done."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from importlib import resources

import psycopg

from app.config import DatabaseName, Settings
from app.db.connect import DATABASE_NAMES, conninfo

# Any constant works; it only serialises concurrent `migrate` runs against one database.
_MIGRATE_LOCK = 0x6D69706F


class MigrationError(RuntimeError):
    """A migration could not be applied, or an applied one was edited afterwards."""


@dataclass
class MigrationReport:
    database: str
    applied: list[str] = field(default_factory=list)
    already: int = 0

    def line(self) -> str:
        if self.applied:
            return f"{self.database}: applied {', '.join(self.applied)} ({self.already} already applied)"
        return f"{self.database}: up to date ({self.already} migrations applied earlier)"


def migration_files(database: DatabaseName) -> list[tuple[str, str]]:
    """(name, SQL) pairs of one tree, in the order they apply."""
    tree = resources.files("app.db") / "migrations" / database
    return sorted((f.name, f.read_text()) for f in tree.iterdir() if f.name.endswith(".sql"))


def checksum(sql: str) -> str:
    """What `mipo_schema_migrations.checksum` records for a migration's SQL (the deploy compares it too)."""
    return hashlib.sha256(sql.encode()).hexdigest()


def migrate_database(dsn: str, database: DatabaseName) -> MigrationReport:
    """Apply the missing migrations of one database, each in its own transaction."""
    report = MigrationReport(database)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATE_LOCK,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS mipo_schema_migrations ("
                " name text PRIMARY KEY, checksum text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done: dict[str, str] = dict(conn.execute("SELECT name, checksum FROM mipo_schema_migrations").fetchall())
            for name, sql in migration_files(database):
                if name in done:
                    if done[name] != checksum(sql):
                        raise MigrationError(
                            f"{database}: migration {name} was changed after it was applied; "
                            "add a new migration instead of editing an old one"
                        )
                    report.already += 1
                    continue
                try:
                    with conn.transaction():
                        conn.execute(sql.encode())
                        conn.execute(
                            "INSERT INTO mipo_schema_migrations (name, checksum) VALUES (%s, %s)",
                            (name, checksum(sql)),
                        )
                except psycopg.Error as exc:
                    raise MigrationError(f"{database}: {name} failed: {exc}".rstrip()) from exc
                report.applied.append(name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATE_LOCK,))
    return report


def pending_migrations(dsn: str, database: DatabaseName) -> list[str]:
    """Names of the migrations `migrate_database` would apply; reads only (no table is created).

    Raises MigrationError for an applied migration that was edited since, as migrating would.
    """
    with psycopg.connect(dsn, autocommit=True) as conn:
        exists = conn.execute("SELECT to_regclass('mipo_schema_migrations') IS NOT NULL").fetchone()
        done: dict[str, str] = {}
        if exists and exists[0]:
            done = dict(conn.execute("SELECT name, checksum FROM mipo_schema_migrations").fetchall())
    pending = []
    for name, sql in migration_files(database):
        if name not in done:
            pending.append(name)
        elif done[name] != checksum(sql):
            raise MigrationError(f"{database}: migration {name} was changed after it was applied; "
                                 "add a new migration instead of editing an old one")
    return pending


def pending_all(settings: Settings) -> dict[str, list[str]]:
    """Pending migrations of config, jobs and results (`migrate --check`), read as their schema owner."""
    return {name: pending_migrations(conninfo(settings, name, as_owner=True), name) for name in DATABASE_NAMES}


def migrate_all(settings: Settings) -> list[MigrationReport]:
    """Migrate config, jobs and results as their schema owner."""
    return [migrate_database(conninfo(settings, name, as_owner=True), name) for name in DATABASE_NAMES]
