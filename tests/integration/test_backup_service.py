"""The backup service: freshness events, the one-shot for the timer, and the internal API's credential."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg

from app.__main__ import main as app_main
from app.db.connect import conninfo
from app.domain.backups import cycle, service
from app.domain.backups.storage import list_backup_ids
from tests.conftest import SettingsFactory
from tests.integration.backup_support import make_kit
from tests.support.postgres import PostgresServer
from tests.support.services import serve_role, write_toml
from tests.support.settings import settings_document
from tests.support.waiting import wait_until


def _stale_events(dsn: str) -> list[tuple[str, dict[str, object]]]:
    with psycopg.connect(dsn) as conn:
        return [(r[0], r[1]) for r in conn.execute(
            "SELECT severity, details FROM events WHERE class = 'backup_stale' ORDER BY id").fetchall()]


def test_stale_backup_raises_one_event_until_a_fresh_one_exists(pg: PostgresServer, migrated: SettingsFactory,
                                                                 credentials_dir: Path, tmp_path: Path) -> None:
    """No verified backup younger than freshness_hours → one `backup_stale` event per window; a fresh
    backup makes the check pass again."""
    kit = make_kit(pg, credentials_dir, tmp_path)
    settings = migrated("mipo_backup", **kit.overrides)
    dsn = conninfo(settings, "config", as_owner=True)
    old = asyncio.run(service.create_backup(settings, now=datetime.now(UTC) - timedelta(hours=30)))

    assert asyncio.run(cycle.freshness_check(settings)) is False
    events = _stale_events(dsn)
    assert [(sev, d["newest_verified"]) for sev, d in events] == [("critical", old.backup_id)]
    assert asyncio.run(cycle.freshness_check(settings)) is False
    assert len(_stale_events(dsn)) == 1  # not one event per check

    # A damaged newest backup is not a verified one: still stale.
    asyncio.run(service.create_backup(settings))
    newest = list_backup_ids(kit.directory)[0]
    with (kit.directory / newest / "config.dump.age").open("r+b") as f:
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 1]))
    assert asyncio.run(cycle.freshness_check(settings)) is False

    asyncio.run(service.create_backup(settings))
    assert asyncio.run(cycle.freshness_check(settings)) is True
    assert len(_stale_events(dsn)) == 1


def test_fresh_appliance_without_backup_is_not_stale_until_it_outlives_the_window(
        pg: PostgresServer, migrated: SettingsFactory, credentials_dir: Path, tmp_path: Path) -> None:
    """Right after a deploy there is no backup yet and nothing to alarm about; once the appliance is older
    than freshness_hours and still has no verified backup, `backup_stale` is raised."""
    kit = make_kit(pg, credentials_dir, tmp_path)
    settings = migrated("mipo_backup", **kit.overrides)
    dsn = conninfo(settings, "config", as_owner=True)
    assert list_backup_ids(kit.directory) == []

    assert asyncio.run(cycle.freshness_check(settings)) is True
    assert _stale_events(dsn) == []

    with psycopg.connect(dsn) as conn:  # the deploy happened 30 h ago (freshness window: 26 h)
        conn.execute("UPDATE mipo_schema_migrations SET applied_at = applied_at - interval '30 hours'")
    assert asyncio.run(cycle.freshness_check(settings)) is False
    assert [(sev, d["newest_verified"]) for sev, d in _stale_events(dsn)] == [("critical", None)]


def test_backup_now_one_shot_backs_up_prunes_and_refuses_without_recipient(
        pg: PostgresServer, migrated: SettingsFactory, databases: dict[str, str], credentials_dir: Path,
        tmp_path: Path) -> None:
    """`python -m app backup-now` (what mipo-backup.timer runs): writes a verified backup and applies
    retention; without a recipient it fails, writes nothing and records `backup_failed`."""
    kit = make_kit(pg, credentials_dir, tmp_path, keep_count=2)
    migrated("mipo_backup", **kit.overrides)
    config = write_toml(settings_document(pg, databases, "mipo_backup", **kit.overrides), tmp_path / "mipo.toml")
    import os
    os.environ["CREDENTIALS_DIRECTORY"] = str(credentials_dir)
    try:
        for _ in range(3):
            assert app_main(["--config", str(config), "backup-now"]) == 0
        assert len(list_backup_ids(kit.directory)) == 2

        unencrypted = make_kit(pg, credentials_dir, tmp_path / "clear", recipient="")
        clear_config = write_toml(settings_document(pg, databases, "mipo_backup", **unencrypted.overrides),
                                  tmp_path / "clear.toml")
        assert app_main(["--config", str(clear_config), "backup-now"]) == 1
        assert [p for p in unencrypted.directory.rglob("*") if p.is_file() and p.name != ".lock"] == []
    finally:
        del os.environ["CREDENTIALS_DIRECTORY"]
    settings = migrated("mipo_backup", **kit.overrides)
    with psycopg.connect(conninfo(settings, "config")) as conn:
        row = conn.execute("SELECT count(*) FROM events WHERE class = 'backup_failed'").fetchone()
        assert row == (1,)


def test_backup_api_answers_only_the_manager_credential(pg: PostgresServer, migrated: SettingsFactory,
                                                        databases: dict[str, str], credentials_dir: Path,
                                                        tmp_path: Path) -> None:
    """Every backup API route refuses a caller without the shared credential (or with a wrong one);
    with it, list / create / status / delete work."""
    kit = make_kit(pg, credentials_dir, tmp_path)
    migrated("mipo_backup", **kit.overrides)
    config = write_toml(settings_document(pg, databases, "mipo_backup", **kit.overrides), tmp_path / "mipo.toml")
    good = {"X-Mipo-Backup-Token": kit.token}
    with serve_role(config, "backup", credentials_dir, tmp_path / "backup.log") as url, \
            httpx.Client(base_url=url, timeout=30) as http:
        calls = [("GET", "/backups", None), ("POST", "/backups", None), ("GET", "/status", None),
                 ("POST", "/backups/20260101T000000Z-abcdef/restore", {"identity": kit.identity}),
                 ("DELETE", "/backups/20260101T000000Z-abcdef", None)]
        for method, path, body in calls:
            for headers in ({}, {"X-Mipo-Backup-Token": "x" * 43}, {"X-Mipo-Backup-Token": kit.token[:-1]}):
                r = http.request(method, path, json=body, headers=headers)
                assert r.status_code == 401, (method, path, headers, r.text)
                assert r.json()["reason"] == "bad_credential"
        assert list_backup_ids(kit.directory) == []  # the refused POST did nothing

        assert http.get("/backups", headers=good).json() == []
        started = http.post("/backups", headers=good)
        assert started.status_code == 202, started.text
        assert http.post("/backups", headers=good).status_code in (202, 409)

        def ended() -> dict[str, Any] | None:
            status: dict[str, Any] = http.get("/status", headers=good).json()
            return status if status["operation"]["state"] != "running" else None

        status = wait_until(ended, 300, "the backup finished", interval=0.5)
        assert status["operation"]["state"] == "succeeded", status
        assert status["fresh"] is True
        listed = http.get("/backups", headers=good).json()
        assert [b["signature_valid"] for b in listed] == [True] * len(listed) and listed
        backup_id = status["operation"]["backup_id"]

        bad = http.post(f"/backups/{backup_id}/restore", headers=good, json={"identity": "not a key"})
        assert bad.status_code == 400
        assert http.post("/backups/../../etc/restore", headers=good, json={"identity": kit.identity}
                         ).status_code in (401, 404)
        assert http.delete(f"/backups/{backup_id}", headers=good).status_code == 204
        assert backup_id not in [b["id"] for b in http.get("/backups", headers=good).json()]


def test_a_failed_dump_leaves_no_partial_backup(pg: PostgresServer, migrated: SettingsFactory,
                                                credentials_dir: Path, tmp_path: Path) -> None:
    """pg_dump failing half-way through the databases: an error naming pg_dump, and nothing that looks
    like a backup, an incomplete one or a leftover work file."""
    from app.domain.backups.tools import ToolError
    kit = make_kit(pg, credentials_dir, tmp_path, pg_bin="/nonexistent/bin")
    settings = migrated("mipo_backup", **kit.overrides)
    try:
        asyncio.run(service.create_backup(settings))
    except ToolError as exc:
        assert "pg_dump failed" in str(exc)
    else:
        raise AssertionError("a backup without pg_dump succeeded")
    assert list_backup_ids(kit.directory) == []
    assert sorted(p.name for p in kit.directory.iterdir()) == [".work"]
    assert list((kit.directory / ".work").iterdir()) == []
