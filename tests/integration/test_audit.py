"""The audit log: every change through the API is recorded, and any edit of a row is detected."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import psycopg
from litestar.testing import TestClient

from app.db.connect import conninfo
from app.domain.audit.service import record, verify
from tests.conftest import SettingsFactory
from tests.support.manager import manager_api  # noqa: F401


def test_user_changes_are_audited_with_actor_before_and_after(manager_api: TestClient) -> None:  # noqa: F811
    """Create, update and delete of a user each leave who/what/before/after, without the password hash."""
    me = manager_api.get("/api/auth/me").json()["username"]
    created = manager_api.post("/api/users", json={"username": "carol", "password": "carol-password-1",
                                                   "role": "viewer"}).json()
    manager_api.patch(f"/api/users/{created['id']}", json={"role": "operator"})
    manager_api.delete(f"/api/users/{created['id']}")
    rows = manager_api.get("/api/audit", params={"object_type": "user"}).json()
    assert [(r["action"], r["actor"]) for r in rows] == [("delete", me), ("update", me), ("create", me)]
    delete, update, create = rows
    assert create["before"] is None and create["after"]["role"] == "viewer"
    assert update["before"]["role"] == "viewer" and update["after"]["role"] == "operator"
    assert delete["before"]["username"] == "carol" and delete["after"] is None
    assert "password_hash" not in str(rows)
    assert manager_api.get("/api/audit/verify").json() == {"rows_checked": 3, "ok": True, "breaks": []}


def test_tampering_with_one_audit_row_is_reported_by_verify(
    manager_api: TestClient, owner_dsn: Callable[[str], str],  # noqa: F811
) -> None:
    """Someone with database access who rewrites history is caught: verify names the row."""
    for name in ("dave", "erin", "frank"):
        assert manager_api.post("/api/users", json={"username": name, "password": "a-long-password-1"}
                                ).status_code == 201
    ids = [r["id"] for r in manager_api.get("/api/audit").json()]
    victim = sorted(ids)[1]
    with psycopg.connect(owner_dsn("config")) as conn:
        conn.execute("UPDATE audit_log SET after = jsonb_set(after, '{role}', '\"admin\"') WHERE id = %s",
                     (victim,))
    report = manager_api.get("/api/audit/verify").json()
    assert report["rows_checked"] == 3 and report["ok"] is False
    assert report["breaks"] == [{"id": victim, "problem": "record content does not match its hash"}]


def test_deleting_an_audit_row_breaks_the_chain_at_the_next_row(
    manager_api: TestClient, owner_dsn: Callable[[str], str],  # noqa: F811
) -> None:
    """Removing a record (not only editing one) is detected too."""
    for name in ("gina", "hank", "ivan"):
        manager_api.post("/api/users", json={"username": name, "password": "a-long-password-1"})
    ids = sorted(r["id"] for r in manager_api.get("/api/audit").json())
    with psycopg.connect(owner_dsn("config")) as conn:
        conn.execute("DELETE FROM audit_log WHERE id = %s", (ids[1],))
    report = manager_api.get("/api/audit/verify").json()
    assert report["breaks"] == [{"id": ids[2], "problem": "link to the previous record does not match"}]


def test_the_manager_role_cannot_rewrite_the_audit_log(migrated: SettingsFactory) -> None:
    """The manager's own database role may only append."""
    settings = migrated()
    with psycopg.connect(conninfo(settings, "config")) as conn:
        try:
            conn.execute("UPDATE audit_log SET actor = 'x'")
        except psycopg.errors.InsufficientPrivilege:
            return
    raise AssertionError("UPDATE on audit_log was allowed")


def test_verify_does_not_depend_on_the_session_time_zone(migrated: SettingsFactory) -> None:
    """A chain written in UTC verifies from a connection set to another time zone."""
    settings = migrated()

    async def run() -> tuple[bool, int]:
        async with await psycopg.AsyncConnection.connect(conninfo(settings, "config")) as conn:
            await conn.execute("SET TIME ZONE 'UTC'")
            await record(conn, "tester", "create", "thing", 1, None, {"n": 1.5, "s": "é"})
            await conn.commit()
            await conn.execute("SET TIME ZONE 'Asia/Kolkata'")
            result = await verify(conn)
            return result.ok, result.rows_checked

    assert asyncio.run(run()) == (True, 1)
