"""`/api/health/services` judges the dispatcher by its leader lock and ingest by the heartbeats it stores."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
from litestar.testing import TestClient

from app.roles.dispatcher.leader import DISPATCHER_LOCK
from tests.support.manager import manager_api  # noqa: F401


def _states(api: TestClient) -> dict[str, str]:
    return {s["name"]: s["state"] for s in api.get("/api/health/services").json()["services"]}


def test_dispatcher_is_up_only_while_a_leader_holds_the_lock(
    manager_api: TestClient, owner_dsn: Callable[[str], str],  # noqa: F811
) -> None:
    """Operators see at once that no dispatcher runs (no schedule would fire), and when one leads again."""
    assert _states(manager_api)["dispatcher"] == "unavailable"
    with psycopg.connect(owner_dsn("jobs"), autocommit=True) as leader:
        leader.execute("SELECT pg_advisory_lock(%s)", (DISPATCHER_LOCK,))
        assert _states(manager_api)["dispatcher"] == "ok"
    assert _states(manager_api)["dispatcher"] == "unavailable"


def test_ingest_is_judged_by_fresh_heartbeats_of_active_scanners(
    manager_api: TestClient, owner_dsn: Callable[[str], str],  # noqa: F811
) -> None:
    assert _states(manager_api)["ingest"] == "unknown"
    with psycopg.connect(owner_dsn("config"), autocommit=True) as conn:
        conn.execute("INSERT INTO scanners (name, status, last_heartbeat_at)"
                     " VALUES ('a', 'active', now() - interval '1 hour')")
        assert _states(manager_api)["ingest"] == "unavailable"
        conn.execute("UPDATE scanners SET last_heartbeat_at = now()")
        assert _states(manager_api)["ingest"] == "ok"
