"""Shared fixtures: one real PostgreSQL 17 + TimescaleDB server per session, fresh databases per test."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from app.config import Settings
from app.db.connect import conninfo
from app.db.migrate import migrate_all
from tests.support.postgres import PostgresServer, running_postgres
from tests.support.settings import make_settings, write_credentials

_counter = itertools.count()


@pytest.fixture(scope="session")
def pg() -> Iterator[PostgresServer]:
    """The session's database server (PostgreSQL 17 + TimescaleDB from the Debian 13 image)."""
    with running_postgres() as server:
        yield server


@pytest.fixture(scope="session")
def credentials_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("credentials")
    write_credentials(path)
    return path


@pytest.fixture()
def databases(pg: PostgresServer) -> dict[str, str]:
    """Three empty appliance databases, unique to this test, with roles and grants as deployed."""
    return pg.create_appliance_databases(prefix=f"t{next(_counter)}_")


SettingsFactory = Callable[..., Settings]


@pytest.fixture()
def settings_for(pg: PostgresServer, databases: dict[str, str], credentials_dir: Path) -> SettingsFactory:
    """settings_for("mipo_ingest", scanner={...}) → Settings logging in as that service role."""
    def factory(role: str = "mipo_manager", **overrides: object) -> Settings:
        return make_settings(pg, databases, credentials_dir, role, **overrides)
    return factory


@pytest.fixture()
def migrated(settings_for: SettingsFactory) -> SettingsFactory:
    """Like settings_for, with all three databases migrated."""
    migrate_all(settings_for())
    return settings_for


@pytest.fixture()
def owner_dsn(migrated: SettingsFactory) -> Callable[[str], str]:
    """DSN of one database as its schema owner, for arranging test data directly."""
    settings = migrated()
    return lambda which: conninfo(settings, which, as_owner=True)  # type: ignore[arg-type]
