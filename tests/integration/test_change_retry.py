"""A finished run's change detection that fails (revoked grant, lock timeout, results DB away) is retried later,
in run order, and its changes are stored exactly once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import psycopg
import pytest
from psycopg import AsyncConnection
from psycopg.rows import dict_row

from app.config import Settings
from app.db.connect import conninfo
from app.domain.results.change_queue import detect_owed
from app.domain.runs.service import finalise_runs
from tests.conftest import SettingsFactory
from tests.support.results import changes, cover, detect, observe

T = TypeVar("T")
SCANNER = 1
NET = [["198.18.0.0", "198.18.0.255"]]
PORTS = "22,8080"


@pytest.fixture()
def dispatcher(migrated: SettingsFactory) -> Settings:
    return migrated("mipo_dispatcher")


def with_connections(settings: Settings, work: Callable[..., Coroutine[Any, Any, T]], *,
                     results: bool = True) -> T:
    """Run `work(config, jobs, results)` on the dispatcher's own autocommit connections (results None if not)."""
    async def main() -> T:
        conns = [await AsyncConnection.connect(conninfo(settings, "config"), autocommit=True),
                 await AsyncConnection.connect(conninfo(settings, "jobs"), autocommit=True)]
        if results:
            conns.append(await AsyncConnection.connect(conninfo(settings, "results"), autocommit=True))
        try:
            return await work(*conns, *([] if results else [None]))
        finally:
            for conn in conns:
                await conn.close()
    return asyncio.run(main())


def finalise(settings: Settings, *, results: bool = True) -> list[int]:
    """One dispatcher pass's run finalisation (finish runs, detect owed changes)."""
    return with_connections(settings, finalise_runs, results=results)


def finished_run(owner: Callable[[str], str], open_ports: list[int]) -> int:
    """A run whose one complete job scanned NET x PORTS and found these ports open on 198.18.0.10."""
    with psycopg.connect(owner("jobs")) as conn:
        run_id = conn.execute("INSERT INTO scan_runs (template_id, template_name, mode) VALUES (1, 't', 'mirror')"
                              " RETURNING id").fetchone()[0]  # type: ignore[index]
        job_id = conn.execute(
            "INSERT INTO jobs (run_id, scanner_id, status, targets, ports, cost, finished_at)"
            " VALUES (%s, %s, 'completed', %s, %s, 512, now()) RETURNING id",
            (run_id, SCANNER, json.dumps(NET), PORTS)).fetchone()[0]  # type: ignore[index]
    observe(owner("results"), run_id, SCANNER, [("198.18.0.10", p) for p in open_ports], job_id=job_id)
    cover(owner("results"), run_id, SCANNER, NET, PORTS, job_id=job_id)
    return int(run_id)


def owed(owner: Callable[[str], str]) -> list[dict[str, Any]]:
    with psycopg.connect(owner("jobs")) as conn, conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT run_id, attempts, last_error FROM change_detection_due"
                           " ORDER BY queued_at, run_id").fetchall()


def backoff_elapsed(owner: Callable[[str], str]) -> None:
    """Time passes: every owed run's retry is due now."""
    with psycopg.connect(owner("jobs")) as conn:
        conn.execute("UPDATE change_detection_due SET due_at = now()")


def summaries(owner: Callable[[str], str]) -> list[int]:
    with psycopg.connect(owner("results")) as conn:
        return [r[0] for r in conn.execute("SELECT run_id FROM run_summaries ORDER BY run_id").fetchall()]


def event_classes(owner: Callable[[str], str]) -> list[str]:
    with psycopg.connect(owner("config")) as conn:
        return [r[0] for r in conn.execute("SELECT class FROM events WHERE class LIKE 'change_detection%%'"
                                           " OR class LIKE 'port_%%' ORDER BY id").fetchall()]


def test_detection_failing_on_a_revoked_grant_is_retried_in_run_order_and_stored_once(
        dispatcher: Settings, owner_dsn: Callable[[str], str]) -> None:
    """The dispatcher loses INSERT on port_changes: the run stays owed (nothing half-written), the next run waits
    behind it, and once the grant is back both are detected in order, each change exactly once."""
    first = finished_run(owner_dsn, [22, 8080])
    assert finalise(dispatcher) == [first]
    assert summaries(owner_dsn) == [first] and owed(owner_dsn) == []

    with psycopg.connect(owner_dsn("results")) as conn:
        conn.execute("REVOKE INSERT ON port_changes FROM mipo_dispatcher")
    closed = finished_run(owner_dsn, [22])  # 8080 closed
    assert finalise(dispatcher) == [closed]
    pending, = owed(owner_dsn)
    assert pending["run_id"] == closed and pending["attempts"] == 1
    assert "permission denied" in pending["last_error"]
    assert changes(owner_dsn("results")) == [] and summaries(owner_dsn) == [first]

    # A later run finishes while the earlier one is owed: it must not be compared with a state the earlier
    # run has not updated yet, so it waits (even once the earlier run's retry is due and fails again).
    reopened = finished_run(owner_dsn, [22, 8080])
    assert finalise(dispatcher) == [reopened]
    backoff_elapsed(owner_dsn)
    finalise(dispatcher)
    assert [(r["run_id"], r["attempts"]) for r in owed(owner_dsn)] == [(closed, 2), (reopened, 0)]
    assert summaries(owner_dsn) == [first]

    with psycopg.connect(owner_dsn("results")) as conn:
        conn.execute("GRANT INSERT ON port_changes TO mipo_dispatcher")
    finalise(dispatcher)  # the retry is not due yet: nothing happens
    assert len(owed(owner_dsn)) == 2
    backoff_elapsed(owner_dsn)
    finalise(dispatcher)
    assert owed(owner_dsn) == []
    assert changes(owner_dsn("results")) == [(closed, SCANNER, "198.18.0.10", 8080, "closed"),
                                             (reopened, SCANNER, "198.18.0.10", 8080, "opened")]
    assert event_classes(owner_dsn) == ["change_detection_failed", "port_closed", "change_detection_recovered",
                                        "port_opened"]

    # Detecting again (a restart that lost the queue's delete, or a second pass) adds nothing.
    assert detect(conninfo(dispatcher, "results"), closed) == []
    finalise(dispatcher)
    assert len(changes(owner_dsn("results"))) == 2
    assert summaries(owner_dsn) == [first, closed, reopened]


def test_detection_blocked_by_a_lock_times_out_and_is_retried(
        dispatcher: Settings, owner_dsn: Callable[[str], str]) -> None:
    """A table lock held elsewhere (retention, a backup) fails detection after the lock timeout instead of
    stalling the dispatcher; after the lock is gone the retry stores the change once."""
    first = finished_run(owner_dsn, [22, 8080])
    finalise(dispatcher)
    closed = finished_run(owner_dsn, [22])
    finalise(dispatcher, results=False)  # the run finishes while the results database is out of reach
    assert [r["run_id"] for r in owed(owner_dsn)] == [closed]

    async def detect_within(config: AsyncConnection, jobs: AsyncConnection, results: AsyncConnection) -> list[int]:
        return await detect_owed(config, jobs, results, lock_timeout=0.5)

    with psycopg.connect(owner_dsn("results")) as holder:
        holder.execute("LOCK TABLE port_state IN ACCESS EXCLUSIVE MODE")
        assert with_connections(dispatcher, detect_within) == []
        pending, = owed(owner_dsn)
        assert pending["attempts"] == 1 and "lock timeout" in pending["last_error"]
    backoff_elapsed(owner_dsn)
    assert with_connections(dispatcher, detect_within) == [closed]
    assert with_connections(dispatcher, detect_within) == []
    assert owed(owner_dsn) == []
    assert changes(owner_dsn("results")) == [(closed, SCANNER, "198.18.0.10", 8080, "closed")]
    assert summaries(owner_dsn) == [first, closed]
