"""The manager's /api/backups relays to the backup API: list, create, status, restore (admin only)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import psycopg
from litestar.testing import TestClient

from app.db.connect import conninfo
from app.domain.backups import service
from app.roles.manager import backup_client
from tests.conftest import SettingsFactory
from tests.integration.backup_support import fill_jobs_and_results, make_kit, settings_db_names, table_fingerprints
from tests.support.manager import create_user, login, manager_client
from tests.support.postgres import PostgresServer
from tests.support.services import serve_role, write_toml
from tests.support.settings import settings_document
from tests.support.waiting import wait_until


def _wait(api: Any, expected_kind: str, path: str = "/api/backups/status") -> dict[str, Any]:
    """Poll the status until the operation ends; 503s are expected while the config database is restored."""
    def ended() -> dict[str, Any] | None:
        r = api.get(path)
        if r.status_code == 200 and r.json()["operation"] and r.json()["operation"]["state"] != "running":
            return dict(r.json()["operation"])
        return None

    operation = wait_until(ended, 300, f"the {expected_kind} operation finished ({path})", interval=0.5)
    assert operation["kind"] == expected_kind
    return operation


def test_manager_backups_api_creates_lists_and_restores(pg: PostgresServer, migrated: SettingsFactory,
                                                        databases: dict[str, str], credentials_dir: Path,
                                                        tmp_path: Path) -> None:
    """An operator backs up and lists; only an admin restores; a wrong manager credential is a 503."""
    kit = make_kit(pg, credentials_dir, tmp_path)
    backup_settings = migrated("mipo_backup", **kit.overrides)
    config = write_toml(settings_document(pg, databases, "mipo_backup", **kit.overrides), tmp_path / "mipo.toml")
    with serve_role(config, "backup", credentials_dir, tmp_path / "backup.log") as url:
        backup_overrides = {**kit.overrides["backup"], "url": url}  # type: ignore[dict-item]
        manager = migrated("mipo_manager", backup=backup_overrides)

        fill_jobs_and_results({k: conninfo(backup_settings, k, as_owner=True)  # type: ignore[arg-type]
                               for k in ("jobs", "results")})
        old_user = create_user(manager, "before-backup", role="viewer")
        with manager_client(manager, role="operator") as operator:
            started = operator.post("/api/backups")
            assert started.status_code == 202, started.text
            done = _wait(operator, "backup")
            assert done["state"] == "succeeded", done
            listed = operator.get("/api/backups").json()
            assert [b["id"] for b in listed] == [done["backup_id"]]
            refused = operator.post(f"/api/backups/{done['backup_id']}/restore", json={"identity": kit.identity})
            assert refused.status_code == 403

        names = settings_db_names(backup_settings)
        before = {k: table_fingerprints(pg, v) for k, v in names.items()}
        with psycopg.connect(conninfo(manager, "config")) as conn:
            conn.execute("INSERT INTO events (class, message) VALUES ('after_backup', 'lost by the restore')")

        with manager_client(manager, role="admin", username="restorer") as admin:
            missing = admin.post("/api/backups/20200101T000000Z-000000/restore", json={"identity": kit.identity})
            assert missing.status_code == 404 and missing.json()["reason"] == "backup_not_found"
            started = admin.post(f"/api/backups/{done['backup_id']}/restore", json={"identity": kit.identity})
            assert started.status_code == 202, started.text
        # The restore replaces the config database, sessions included: ask the backup service directly
        # until it is over, then log in again.
        with httpx.Client(base_url=url, headers={"X-Mipo-Backup-Token": kit.token}, timeout=30) as backup_api:
            _wait(backup_api, "restore", path="/status")
        with manager_client(manager, role="admin", username="checker") as admin:
            outcome = _wait(admin, "restore")
        assert outcome["state"] == "succeeded", outcome
        # A user from before the backup logs in and sees the old results.
        from app.roles.manager.app import create_app
        with TestClient(create_app(manager), base_url="http://127.0.0.1") as client:
            viewer = login(client, old_user)
            runs = viewer.get("/api/results/runs")
            assert runs.status_code == 200 and len(runs.json()) == 3, runs.text
        after = {k: table_fingerprints(pg, v) for k, v in names.items()}
        for k in ("jobs", "results"):
            assert after[k] == before[k]
        with psycopg.connect(conninfo(manager, "config")) as conn:
            assert conn.execute("SELECT count(*) FROM events WHERE class = 'after_backup'").fetchone() == (0,)
            assert conn.execute("SELECT count(*) FROM events WHERE class = 'backup_restored'").fetchone() == (1,)

        (credentials_dir / "wrong-backup-token").write_text("w" * 43 + "\n")
        wrong = migrated("mipo_manager", backup={**backup_overrides, "api_token_credential": "wrong-backup-token"})
        with manager_client(wrong, role="viewer") as viewer:
            r = viewer.get("/api/backups")
            assert r.status_code == 503 and r.json()["reason"] == "backup_credential_rejected"


def test_backups_page_and_api_read_the_backup_service_through_one_client(
        pg: PostgresServer, migrated: SettingsFactory, databases: dict[str, str], credentials_dir: Path,
        tmp_path: Path) -> None:
    """The GUI page and /api/backups show the same backups via `backup_client`; a refused manager
    credential reads the same on both (503 in the API, the reason on the page)."""
    kit = make_kit(pg, credentials_dir, tmp_path)
    backup_settings = migrated("mipo_backup", **kit.overrides)
    made = asyncio.run(service.create_backup(backup_settings))
    config = write_toml(settings_document(pg, databases, "mipo_backup", **kit.overrides), tmp_path / "mipo.toml")
    with serve_role(config, "backup", credentials_dir, tmp_path / "backup.log") as url:
        backup_overrides = {**kit.overrides["backup"], "url": url}  # type: ignore[dict-item]
        manager = migrated("mipo_manager", backup=backup_overrides)
        assert [b.id for b in asyncio.run(backup_client.list_backups(manager))] == [made.backup_id]
        with manager_client(manager, role="viewer") as viewer:
            assert [b["id"] for b in viewer.get("/api/backups").json()] == [made.backup_id]
            page = viewer.get("/backups")
            assert page.status_code == 200 and made.backup_id in page.text and 'role="alert"' not in page.text

        (credentials_dir / "other-backup-token").write_text("o" * 43 + "\n")
        wrong = migrated("mipo_manager", backup={**backup_overrides, "api_token_credential": "other-backup-token"})
        with manager_client(wrong, role="viewer") as viewer:
            assert viewer.get("/api/backups").json()["reason"] == "backup_credential_rejected"
            page = viewer.get("/backups")
            assert page.status_code == 200 and "refused the manager&#39;s credential" in page.text
            assert made.backup_id not in page.text
