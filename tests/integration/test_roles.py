"""Each role exposes only its own routes, and `/health` follows its databases."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.roles.backup.app import create_app as create_backup
from app.roles.ingest.app import create_app as create_ingest
from app.roles.manager.app import create_app as create_manager
from tests.conftest import SettingsFactory
from tests.support.postgres import PostgresServer, running_postgres
from tests.support.services import serve_role, write_toml
from tests.support.settings import settings_document, write_credentials
from tests.support.waiting import wait_until


def _paths(app: object) -> list[str]:
    return [route.path for route in app.routes]  # type: ignore[attr-defined]


def test_ingest_mounts_no_admin_or_gui_route(settings_for: SettingsFactory) -> None:
    """The scanner-facing node cannot be used to reach the admin API or the GUI."""
    paths = _paths(create_ingest(settings_for("mipo_ingest")))
    assert paths, "ingest has routes"
    assert all(p == "/health" or p.startswith("/scanner/") for p in paths), paths
    assert not [p for p in paths if p.startswith("/api")]


def test_manager_mounts_no_scanner_route(settings_for: SettingsFactory) -> None:
    """The manager never answers the scanner API, whatever Traefik does."""
    paths = _paths(create_manager(settings_for("mipo_manager")))
    assert "/health" in paths
    assert not [p for p in paths if p == "/scanner" or p.startswith("/scanner/")], paths


def test_backup_api_mounts_neither(settings_for: SettingsFactory) -> None:
    paths = _paths(create_backup(settings_for("mipo_backup")))
    assert not [p for p in paths if p.startswith(("/scanner", "/api/schema"))], paths


@pytest.fixture(scope="module")
def own_pg() -> Iterator[PostgresServer]:
    """A server of its own: this module stops and starts it."""
    with running_postgres() as server:
        yield server


@pytest.mark.parametrize(("role", "service_role"), [
    ("manager", "mipo_manager"), ("ingest", "mipo_ingest"), ("backup", "mipo_backup"),
])
def test_health_turns_503_when_the_database_stops_and_200_when_it_returns(
    own_pg: PostgresServer, tmp_path: Path, role: str, service_role: str
) -> None:
    """Traefik's health checks and operators see a database outage, and its end, on every HTTP role."""
    from app.db.migrate import migrate_all
    from tests.support.settings import make_settings

    creds = tmp_path / "creds"
    write_credentials(creds)
    dbs = own_pg.create_appliance_databases(prefix=f"h_{role}_")
    migrate_all(make_settings(own_pg, dbs, creds, "mipo_owner"))
    config = write_toml(settings_document(own_pg, dbs, service_role), tmp_path / "mipo.toml")
    with serve_role(config, role, creds, tmp_path / f"{role}.log") as url:
        _wait_status(url, 200)
        own_pg.stop()
        try:
            _wait_status(url, 503)
            body = httpx.get(url + "/health", timeout=10).json()
            assert "unavailable" in body["databases"].values()
        finally:
            own_pg.start()
        _wait_status(url, 200, timeout=60)


def _health_status(url: str) -> int:
    """The /health status code; 0 when there is no HTTP answer."""
    try:
        return httpx.get(url + "/health", timeout=10).status_code
    except httpx.HTTPError:
        return 0


def _wait_status(url: str, wanted: int, timeout: float = 30) -> None:
    wait_until(lambda: _health_status(url) == wanted, timeout, f"{url}/health answering {wanted}", interval=0.5,
               detail=lambda: f"it answers {_health_status(url)}")
