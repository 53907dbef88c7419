"""Planning, schedules, run requests, reconciling and finalisation against real databases, as the dispatcher role."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import psycopg
import pytest
from psycopg import AsyncConnection

from app.config import Settings
from app.db.connect import conninfo
from app.domain.planning.service import create_run
from app.domain.reconciler.service import reconcile
from app.domain.repairs.executor import execute_repairs
from app.domain.runs.service import answer_run_requests, finalise_runs
from app.domain.schedules.runner import process_schedules
from app.domain.targets.addresses import TargetSet, parse_ranges
from tests.conftest import SettingsFactory

T = TypeVar("T")
# Template rate 100 probes/s x 60 s jobs / 1,024 ports -> 5 addresses per job: many small jobs.
FAST = {"dispatcher": {"job_target_seconds": 60.0}}
TARGETS = ["198.18.0.0/25", "198.18.0.64/26", "198.18.0.128/28", "198.18.0.144/28"]  # overlap + adjacency
GLOBAL_EXCLUSION = "198.18.0.10/32"
TEMPLATE_EXCLUSION = "198.18.0.96/29"


def expected_targets() -> TargetSet:
    return TargetSet.parse(TARGETS).subtract(TargetSet.parse([GLOBAL_EXCLUSION, TEMPLATE_EXCLUSION]))


def arrange(dsn: str, *, mode: str = "mirror", scanners: int = 2, online: int | None = None,
            ports: str = "1-1024", rate: int = 100) -> dict[str, Any]:
    """Scanners, a group, overlapping subnets, exclusions and a template, straight into the config DB."""
    online = scanners if online is None else online
    with psycopg.connect(dsn) as conn:
        ids = [conn.execute(
            "INSERT INTO scanners (name, status, last_heartbeat_at, rate_limit) VALUES (%s, 'active', %s, 20000)"
            " RETURNING id", (f"scanner-{i}", datetime.now(UTC) if i < online else None)).fetchone()[0]  # type: ignore[index]
            for i in range(scanners)]
        group = conn.execute("INSERT INTO scanner_groups (name, mode) VALUES ('g', %s) RETURNING id",
                             (mode,)).fetchone()[0]  # type: ignore[index]
        for sid in ids:
            conn.execute("INSERT INTO scanner_group_members VALUES (%s, %s)", (group, sid))
        plist = conn.execute("INSERT INTO port_lists (name, spec) VALUES ('p', %s) RETURNING id",
                             (ports,)).fetchone()[0]  # type: ignore[index]
        tpl = conn.execute(
            "INSERT INTO scan_templates (name, port_list_id, scanner_group_id, rate) VALUES ('t', %s, %s, %s)"
            " RETURNING id", (plist, group, rate)).fetchone()[0]  # type: ignore[index]
        sgroup = conn.execute("INSERT INTO subnet_groups (name) VALUES ('sg') RETURNING id").fetchone()[0]  # type: ignore[index]
        for i, cidr in enumerate(TARGETS):
            sub = conn.execute("INSERT INTO subnets (name, cidr) VALUES (%s, %s) RETURNING id",
                               (f"s{i}", cidr)).fetchone()[0]  # type: ignore[index]
            if i % 2:
                conn.execute("INSERT INTO template_targets (template_id, subnet_id) VALUES (%s, %s)", (tpl, sub))
            else:
                conn.execute("INSERT INTO subnet_group_members VALUES (%s, %s)", (sgroup, sub))
        conn.execute("INSERT INTO template_targets (template_id, subnet_group_id) VALUES (%s, %s)", (tpl, sgroup))
        conn.execute("INSERT INTO exclusions (cidr) VALUES (%s)", (GLOBAL_EXCLUSION,))
        conn.execute("INSERT INTO exclusions (cidr, template_id) VALUES (%s, %s)", (TEMPLATE_EXCLUSION, tpl))
    return {"scanners": ids, "group": group, "template": tpl}


def run_async(settings: Settings, work: Callable[[AsyncConnection, AsyncConnection], Coroutine[Any, Any, T]]) -> T:
    """Run `work(config, jobs)` on autocommit connections as the settings' role (the dispatcher's in these tests)."""
    async def main() -> T:
        config = await AsyncConnection.connect(conninfo(settings, "config"), autocommit=True)
        jobs = await AsyncConnection.connect(conninfo(settings, "jobs"), autocommit=True)
        try:
            return await work(config, jobs)
        finally:
            await config.close()
            await jobs.close()
    return asyncio.run(main())


def plan(settings: Settings, template: int, **kw: Any) -> Any:
    async def work(config: AsyncConnection, jobs: AsyncConnection) -> Any:
        async with config.transaction(), jobs.transaction():
            return await create_run(config, jobs, settings, template, **kw)
    return run_async(settings, work)


def jobs_of(dsn: str, run_id: int) -> list[dict[str, Any]]:
    with psycopg.connect(dsn) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute("SELECT * FROM jobs WHERE run_id = %s ORDER BY id", (run_id,))
        return cur.fetchall()


def events(dsn: str, cls: str | None = None) -> list[dict[str, Any]]:
    with psycopg.connect(dsn) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute("SELECT * FROM events WHERE %(c)s::text IS NULL OR class = %(c)s ORDER BY id", {"c": cls})
        return cur.fetchall()


def claim(dsn: str, scanner_id: int, lease_seconds: float = 300) -> dict[str, Any] | None:
    """What the scanner's claim does (ingest's protocol): SKIP LOCKED, bump the token and attempts."""
    with psycopg.connect(dsn) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute(
            "UPDATE jobs SET status = 'running', lease_token = lease_token + 1, attempts = attempts + 1,"
            " lease_expires_at = now() + make_interval(secs => %s), started_at = coalesce(started_at, now()),"
            " attempt_started_at = now(), updated_at = now()"
            " WHERE id = (SELECT id FROM jobs WHERE scanner_id = %s AND status = 'pending' ORDER BY id"
            "             LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING *",
            (lease_seconds, scanner_id),
        )
        return cur.fetchone()


def accept_batch(dsn: str, job_id: int, token: int) -> bool:
    """Ingest's fence: a batch is taken only under the job's current lease token."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT 1 FROM jobs WHERE id = %s AND status = 'running' AND lease_token = %s",
                           (job_id, token)).fetchone()
        return row is not None


def complete(dsn: str, job_id: int) -> None:
    with psycopg.connect(dsn) as conn:
        conn.execute("UPDATE jobs SET status = 'completed', done_cost = cost, finished_at = now() WHERE id = %s",
                     (job_id,))


@pytest.fixture()
def dispatcher(migrated: SettingsFactory) -> Settings:
    return migrated("mipo_dispatcher", **FAST)


def _covered(jobs: list[dict[str, Any]]) -> list[int]:
    """Every address of every job, with repetition, in job order."""
    out: list[int] = []
    for job in jobs:
        ts = parse_ranges(job["targets"])
        out.extend(a for lo, hi in ts.v4.intervals for a in range(lo, hi + 1))
    return out


def test_mirror_group_gets_every_batch_once_per_scanner(dispatcher: Settings, owner_dsn: Callable[[str], str]) -> None:
    """Each vantage point scans the same batches: targets minus exclusions, once per scanner, same ports."""
    world = arrange(owner_dsn("config"), mode="mirror")
    planned = plan(dispatcher, world["template"], requested_by="test")
    jobs = jobs_of(owner_dsn("jobs"), planned.run_id)
    per_scanner: dict[int, list[tuple[str, ...]]] = {}
    for job in jobs:
        per_scanner.setdefault(job["scanner_id"], []).append(tuple(map(tuple, job["targets"])))  # type: ignore[arg-type]
    assert set(per_scanner) == set(world["scanners"])
    a, b = per_scanner.values()
    assert a == b and len(a) == len(set(a)) and len(a) > 5
    expected = expected_targets()
    one = [j for j in jobs if j["scanner_id"] == world["scanners"][0]]
    assert sorted(_covered(one)) == sorted(a for lo, hi in expected.v4.intervals for a in range(lo, hi + 1))
    for job in jobs:
        n = parse_ranges(job["targets"]).count()
        assert job["status"] == "pending" and job["ports"] == "1-1024"
        assert job["cost"] == n * 1024 and job["estimate_seconds"] == pytest.approx(n * 1024 / 100)
        assert job["options"] == {"rate": 100, "timeout_ms": 1000, "banner": True, "tls": True}
        assert n <= 100 * 60 // 1024
    assert planned.cost == 2 * expected.count() * 1024


def test_split_group_covers_targets_exactly_once_across_online_scanners(
        dispatcher: Settings, owner_dsn: Callable[[str], str]) -> None:
    """Split: the union of all jobs is the target set, no address twice; the offline scanner gets nothing."""
    world = arrange(owner_dsn("config"), mode="split", scanners=3, online=2)
    planned = plan(dispatcher, world["template"])
    jobs = jobs_of(owner_dsn("jobs"), planned.run_id)
    covered = _covered(jobs)
    assert len(covered) == len(set(covered))
    expected = expected_targets()
    assert set(covered) == {a for lo, hi in expected.v4.intervals for a in range(lo, hi + 1)}
    assert {j["scanner_id"] for j in jobs} == set(world["scanners"][:2])


def test_planning_notifies_each_scanner_that_got_work(dispatcher: Settings, owner_dsn: Callable[[str], str]) -> None:
    """Scanners LISTEN on mipo_jobs: one notification per scanner with new jobs, after commit."""
    world = arrange(owner_dsn("config"), mode="mirror")
    with psycopg.connect(owner_dsn("jobs"), autocommit=True) as listener:
        listener.execute("LISTEN mipo_jobs")
        plan(dispatcher, world["template"])
        got = {n.payload for n in listener.notifies(timeout=5, stop_after=2)}
    assert got == {str(s) for s in world["scanners"]}


def test_a_template_with_nothing_to_scan_records_a_failed_run_and_an_event(
        dispatcher: Settings, owner_dsn: Callable[[str], str]) -> None:
    world = arrange(owner_dsn("config"), mode="split", online=0)
    planned = plan(dispatcher, world["template"])
    assert planned.failed == "no_scanner"
    with psycopg.connect(owner_dsn("jobs")) as conn:
        assert conn.execute("SELECT status FROM scan_runs WHERE id = %s", (planned.run_id,)).fetchone() == ("failed",)
    assert [e["details"]["reason"] for e in events(owner_dsn("config"), "plan_failed")] == ["no_scanner"]


def test_a_run_too_large_to_finish_is_refused_before_writing_jobs(
        migrated: SettingsFactory, owner_dsn: Callable[[str], str]) -> None:
    settings = migrated("mipo_dispatcher", dispatcher={"job_target_seconds": 60.0, "max_jobs_per_run": 10})
    world = arrange(owner_dsn("config"), mode="mirror")
    planned = plan(settings, world["template"])
    assert planned.failed == "too_large" and jobs_of(owner_dsn("jobs"), planned.run_id) == []
    assert "narrow the targets" in events(owner_dsn("config"), "plan_failed")[0]["message"]


def test_out_of_scope_targets_are_never_planned(migrated: SettingsFactory, owner_dsn: Callable[[str], str]) -> None:
    settings = migrated("mipo_dispatcher", scope={"authorised": ["198.18.0.0/26"]}, **FAST)
    world = arrange(owner_dsn("config"), mode="split")
    planned = plan(settings, world["template"])
    covered = _covered(jobs_of(owner_dsn("jobs"), planned.run_id))
    assert max(covered) <= int(__import__("ipaddress").ip_address("198.18.0.63"))
    assert len(events(owner_dsn("config"), "out_of_scope")) == 1


# --- schedules -------------------------------------------------------------------------------------------------

def _schedule(dsn: str, template: int, cron: str, tz: str, next_run_at: datetime | None, jitter: int = 0) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute(  # type: ignore[index]
            "INSERT INTO schedules (name, template_id, cron, timezone, jitter_seconds, next_run_at)"
            " VALUES ('s', %s, %s, %s, %s, %s) RETURNING id", (template, cron, tz, jitter, next_run_at)).fetchone()[0]


def _tick_schedules(settings: Settings, now: datetime) -> list[Any]:
    return run_async(settings, lambda c, j: process_schedules(c, j, settings, now))


def _runs(dsn: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT schedule_id, due_at FROM scan_runs ORDER BY due_at").fetchall()


def test_schedule_across_berlin_spring_forward_creates_runs_at_the_right_instants(
        dispatcher: Settings, owner_dsn: Callable[[str], str]) -> None:
    """A daily 02:30 Europe/Berlin schedule: 01:30 UTC on 28 March (CET), 01:30 UTC on 29 March (the
    non-existent 02:30 fires as the clock jumps), then 00:30 UTC (CEST) on 30 March."""
    world = arrange(owner_dsn("config"), mode="mirror")
    sid = _schedule(owner_dsn("config"), world["template"], "30 2 * * *", "Europe/Berlin", None)
    t = datetime(2026, 3, 27, 12, tzinfo=UTC)
    _tick_schedules(dispatcher, t)  # computes next_run_at
    for minute in range(0, 3 * 24 * 60, 10):  # a dispatcher ticking every 10 minutes for three days
        _tick_schedules(dispatcher, t + timedelta(minutes=minute))
    assert _runs(owner_dsn("jobs")) == [
        (sid, datetime(2026, 3, 28, 1, 30, tzinfo=UTC)), (sid, datetime(2026, 3, 29, 1, 30, tzinfo=UTC)),
        (sid, datetime(2026, 3, 30, 0, 30, tzinfo=UTC))]
    assert events(owner_dsn("config"), "missed_run") == []


def test_restart_mid_due_time_creates_no_duplicate_run(dispatcher: Settings, owner_dsn: Callable[[str], str]) -> None:
    """The run committed but the dispatcher died before moving next_run_at: the restart plans nothing new."""
    world = arrange(owner_dsn("config"), mode="mirror")
    due = datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    sid = _schedule(owner_dsn("config"), world["template"], "30 2 * * *", "Europe/Berlin", due)
    plan(dispatcher, world["template"], schedule_id=sid, due_at=due)  # the crashed pass got this far
    runs = _tick_schedules(dispatcher, due + timedelta(seconds=20))  # the restarted dispatcher
    assert [r.run_id for r in runs] == [None]
    assert _runs(owner_dsn("jobs")) == [(sid, due)]
    with psycopg.connect(owner_dsn("config")) as conn:
        next_due = conn.execute("SELECT next_run_at FROM schedules").fetchone()
    assert next_due == (datetime(2026, 3, 30, 0, 30, tzinfo=UTC),)


def test_a_due_time_passed_while_the_dispatcher_was_down_is_a_missed_run_event(
        dispatcher: Settings, owner_dsn: Callable[[str], str]) -> None:
    world = arrange(owner_dsn("config"), mode="mirror")
    due = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
    _schedule(owner_dsn("config"), world["template"], "0 * * * *", "UTC", due, jitter=60)
    _tick_schedules(dispatcher, due + timedelta(hours=3, minutes=30))
    missed = events(owner_dsn("config"), "missed_run")
    assert len(missed) == 1 and missed[0]["details"]["count"] == 4  # 08:00 .. 11:00
    assert _runs(owner_dsn("jobs")) == []
    with psycopg.connect(owner_dsn("config")) as conn:
        assert conn.execute("SELECT next_run_at FROM schedules").fetchone() == (due + timedelta(hours=4),)


def test_run_requests_become_exactly_one_run_each(dispatcher: Settings, owner_dsn: Callable[[str], str]) -> None:
    world = arrange(owner_dsn("config"), mode="mirror")
    with psycopg.connect(owner_dsn("config")) as conn:
        for _ in range(2):
            conn.execute("INSERT INTO run_requests (template_id, requested_by) VALUES (%s, 'alice')",
                         (world["template"],))
    for _ in range(2):
        run_async(dispatcher, lambda c, j: answer_run_requests(c, j, dispatcher))
    with psycopg.connect(owner_dsn("config")) as conn:
        answered = [r[0] for r in conn.execute("SELECT run_id FROM run_requests ORDER BY id")]
    with psycopg.connect(owner_dsn("jobs")) as conn:
        runs = [r[0] for r in conn.execute("SELECT id FROM scan_runs ORDER BY id")]
    assert answered == runs and len(runs) == 2


# --- reconciler ------------------------------------------------------------------------------------------------

def _age(dsn: str, sql: str, *params: Any) -> None:
    with psycopg.connect(dsn) as conn:
        conn.execute(sql, params)


def test_scanner_killed_mid_job_lease_expires_job_requeued_with_new_token_old_results_refused(
        dispatcher: Settings, owner_dsn: Callable[[str], str]) -> None:
    """The stall (lease_expired, redispatch) and the recovery are events; the old lease's late batch is refused."""
    world = arrange(owner_dsn("config"), mode="mirror", scanners=1)
    planned = plan(dispatcher, world["template"])
    jdsn = owner_dsn("jobs")
    first = claim(jdsn, world["scanners"][0])
    assert first is not None and accept_batch(jdsn, first["id"], first["lease_token"])
    # The scanner dies: no renewals; its lease runs out.
    _age(jdsn, "UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = %s", first["id"])
    run_async(dispatcher, lambda c, j: reconcile(c, j, dispatcher))
    after = next(j for j in jobs_of(jdsn, planned.run_id) if j["id"] == first["id"])
    assert after["status"] == "pending" and after["lease_token"] > first["lease_token"]
    assert not accept_batch(jdsn, first["id"], first["lease_token"])  # late results of the dead lease
    again = claim(jdsn, world["scanners"][0])
    assert again is not None and again["id"] == first["id"] and again["lease_token"] > after["lease_token"]
    assert again["attempts"] == 2
    run_async(dispatcher, lambda c, j: reconcile(c, j, dispatcher))
    stall, = events(owner_dsn("config"), "lease_expired")
    recovery, = events(owner_dsn("config"), "recovered")
    assert (stall["job_id"], stall["scanner_id"], stall["action"]) == (first["id"], world["scanners"][0], "redispatch")
    assert recovery["job_id"] == first["id"] and recovery["details"]["stall"] == "lease_expired"
    assert recovery["id"] > stall["id"]


def test_lease_expiring_max_attempts_times_fails_the_job(dispatcher: Settings, owner_dsn: Callable[[str], str]) -> None:
    world = arrange(owner_dsn("config"), mode="mirror", scanners=1)
    plan(dispatcher, world["template"])
    jdsn = owner_dsn("jobs")
    job_id = None
    for _ in range(3):
        job = claim(jdsn, world["scanners"][0])
        assert job is not None and (job_id is None or job["id"] == job_id)
        job_id = job["id"]
        _age(jdsn, "UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = %s", job_id)
        run_async(dispatcher, lambda c, j: reconcile(c, j, dispatcher))
    with psycopg.connect(jdsn) as conn:
        assert conn.execute("SELECT status, error_class FROM jobs WHERE id = %s", (job_id,)).fetchone() == (
            "failed", "lease_expired")
    assert [e["action"] for e in events(owner_dsn("config"), "lease_expired")] == ["redispatch", "redispatch", "fail"]


def test_silent_scanner_split_jobs_move_mirror_jobs_wait(dispatcher: Settings, owner_dsn: Callable[[str], str]) -> None:
    """no_heartbeat: one event per scanner (action wait); its split jobs are reassigned to the online peer."""
    cdsn, jdsn = owner_dsn("config"), owner_dsn("jobs")
    world = arrange(cdsn, mode="split", scanners=2)
    planned = plan(dispatcher, world["template"])
    a, b = world["scanners"]
    _age(cdsn, "UPDATE scanners SET last_heartbeat_at = now() - interval '5 minutes' WHERE id = %s", a)
    run_async(dispatcher, lambda c, j: reconcile(c, j, dispatcher))
    assert {j["scanner_id"] for j in jobs_of(jdsn, planned.run_id)} == {b}
    silent, = [e for e in events(cdsn, "no_heartbeat") if e["job_id"] is None]
    assert (silent["scanner_id"], silent["action"]) == (a, "wait")
    moved = [e for e in events(cdsn, "no_heartbeat") if e["job_id"] is not None]
    assert moved and all(e["action"] == "reassign" and e["details"]["to_scanner"] == b for e in moved)
    # The scanner comes back: one recovery event for it.
    _age(cdsn, "UPDATE scanners SET last_heartbeat_at = now() WHERE id = %s", a)
    run_async(dispatcher, lambda c, j: reconcile(c, j, dispatcher))
    assert [e["scanner_id"] for e in events(cdsn, "recovered") if e["job_id"] is None] == [a]


def test_mirror_jobs_of_a_silent_scanner_wait_for_it(dispatcher: Settings, owner_dsn: Callable[[str], str]) -> None:
    cdsn, jdsn = owner_dsn("config"), owner_dsn("jobs")
    world = arrange(cdsn, mode="mirror", scanners=2)
    planned = plan(dispatcher, world["template"])
    a, _ = world["scanners"]
    before = {j["id"]: j["scanner_id"] for j in jobs_of(jdsn, planned.run_id)}
    _age(cdsn, "UPDATE scanners SET last_heartbeat_at = now() - interval '5 minutes' WHERE id = %s", a)
    run_async(dispatcher, lambda c, j: reconcile(c, j, dispatcher))
    assert {j["id"]: j["scanner_id"] for j in jobs_of(jdsn, planned.run_id)} == before
    assert [e["action"] for e in events(cdsn, "no_heartbeat")] == ["wait"]


def test_stuck_pending_stuck_running_and_expired_each_raise_one_event(
        dispatcher: Settings, owner_dsn: Callable[[str], str]) -> None:
    """Jobs queued behind a busy scanner are not stuck; once it has run nothing for 15 min they are."""
    cdsn, jdsn = owner_dsn("config"), owner_dsn("jobs")
    world = arrange(cdsn, mode="split", scanners=1)
    planned = plan(dispatcher, world["template"])
    ids = [j["id"] for j in jobs_of(jdsn, planned.run_id)]
    running = claim(jdsn, world["scanners"][0])
    assert running is not None and running["id"] == ids[0]
    _age(jdsn, "UPDATE jobs SET updated_at = now() - interval '16 minutes' WHERE id = %s", ids[1])
    # Far past 3x its estimate but inside the floor: a small job taking a minute is not stuck.
    _age(jdsn, "UPDATE jobs SET estimate_seconds = 1 WHERE id = %s", running["id"])
    _age(jdsn, "UPDATE jobs SET attempt_started_at = now() - interval '60 seconds' WHERE id = %s", running["id"])
    run_async(dispatcher, lambda c, j: reconcile(c, j, dispatcher))
    assert [e for e in events(cdsn) if e["class"] == "stuck_running"] == []
    # Past both thresholds: 3x the estimate and the floor a small job's estimate does not reach.
    _age(jdsn, "UPDATE jobs SET attempt_started_at = now() - make_interval(secs => greatest(4 * estimate_seconds,"
         " %s + 60)) WHERE id = %s",
         dispatcher.dispatcher.stuck_running_min_seconds, running["id"])
    _age(jdsn, "UPDATE jobs SET created_at = now() - interval '25 hours' WHERE id = %s", ids[2])

    def stalls() -> list[tuple[str, int, str | None]]:
        return sorted((e["class"], e["job_id"], e["action"]) for e in events(cdsn)
                      if e["class"] in ("stuck_pending", "stuck_running", "expired"))

    for _ in range(2):  # a second pass must not repeat the stall events
        run_async(dispatcher, lambda c, j: reconcile(c, j, dispatcher))
    assert stalls() == [("expired", ids[2], "fail"), ("stuck_running", ids[0], None)]
    # The scanner finished its job 16 minutes ago and claimed nothing since: now ids[1] is stuck.
    _age(jdsn, "UPDATE jobs SET status = 'completed', finished_at = now() - interval '16 minutes' WHERE id = %s",
         ids[0])
    _age(jdsn, "UPDATE job_attempts SET started_at = now() - interval '20 minutes' WHERE job_id = %s", ids[0])
    run_async(dispatcher, lambda c, j: reconcile(c, j, dispatcher))
    assert stalls() == [("expired", ids[2], "fail"), ("stuck_pending", ids[1], None), ("stuck_running", ids[0], None)]
    assert [e["details"]["stall"] for e in events(cdsn, "recovered")] == ["stuck_running"]


def test_many_stalled_jobs_of_one_scanner_make_one_event(dispatcher: Settings,
                                                         owner_dsn: Callable[[str], str]) -> None:
    cdsn, jdsn = owner_dsn("config"), owner_dsn("jobs")
    world = arrange(cdsn, mode="split", scanners=1)
    planned = plan(dispatcher, world["template"])
    n = len(jobs_of(jdsn, planned.run_id))
    _age(jdsn, "UPDATE jobs SET updated_at = now() - interval '16 minutes'")
    run_async(dispatcher, lambda c, j: reconcile(c, j, dispatcher))
    stuck, = events(cdsn, "stuck_pending")
    assert stuck["details"]["jobs"] == n and stuck["scanner_id"] == world["scanners"][0]


def test_run_finishes_when_all_jobs_are_terminal(dispatcher: Settings, owner_dsn: Callable[[str], str]) -> None:
    cdsn, jdsn = owner_dsn("config"), owner_dsn("jobs")
    world = arrange(cdsn, mode="split", scanners=1)
    planned = plan(dispatcher, world["template"])
    jobs = jobs_of(jdsn, planned.run_id)
    for job in jobs[:-1]:
        complete(jdsn, job["id"])
    assert run_async(dispatcher, lambda c, j: finalise_runs(c, j, None)) == []
    with psycopg.connect(jdsn) as conn:
        conn.execute("UPDATE jobs SET status = 'failed' WHERE id = %s", (jobs[-1]["id"],))
    assert run_async(dispatcher, lambda c, j: finalise_runs(c, j, None)) == [planned.run_id]
    with psycopg.connect(jdsn) as conn:
        assert conn.execute("SELECT status FROM scan_runs").fetchone() == ("partial",)
    finished, = events(cdsn, "run_finished")
    assert finished["details"] == {"status": "partial", "jobs": len(jobs), "completed": len(jobs) - 1}


def test_repair_requests_are_carried_out_once_by_the_dispatcher(
        dispatcher: Settings, owner_dsn: Callable[[str], str]) -> None:
    cdsn, jdsn = owner_dsn("config"), owner_dsn("jobs")
    world = arrange(cdsn, mode="split", scanners=2)
    planned = plan(dispatcher, world["template"])
    a, b = world["scanners"]
    job = next(j for j in jobs_of(jdsn, planned.run_id) if j["scanner_id"] == a)
    with psycopg.connect(cdsn) as conn:
        conn.execute("INSERT INTO repair_requests (action, job_id, requested_by) VALUES ('reassign', %s, 'op')",
                     (job["id"],))
        conn.execute("INSERT INTO repair_requests (action, scanner_id, requested_by) VALUES ('drain', %s, 'op')",
                     (b,))
    for _ in range(2):
        run_async(dispatcher, lambda c, j: execute_repairs(c, j, dispatcher))
    with psycopg.connect(cdsn) as conn:
        outcomes = conn.execute("SELECT action, outcome FROM repair_requests ORDER BY id").fetchall()
        assert conn.execute("SELECT status FROM scanners WHERE id = %s", (b,)).fetchone() == ("draining",)
    assert outcomes[0] == ("reassign", f"done: moved to scanner {b}")
    assert outcomes[1][1].startswith("done: draining")
    # Draining b moved every split job (including the reassigned one) back to a.
    assert {j["scanner_id"] for j in jobs_of(jdsn, planned.run_id)} == {a}
    assert [e["action"] for e in events(cdsn, "repair")] == ["reassign", "drain"]
    assert json.dumps(events(cdsn, "repair")[0]["details"])


def test_lease_expiry_against_the_ingest_claim_and_fence(migrated: SettingsFactory,
                                                         owner_dsn: Callable[[str], str]) -> None:
    """With ingest's own claim and lease check (as mipo_ingest): the dead scanner's token is refused after the
    requeue, and the next claim gets a newer token that is accepted."""
    from app.domain.jobs import repository as ingest_jobs
    from app.domain.jobs.service import locked_lease
    from app.errors import Conflict

    dispatcher = migrated("mipo_dispatcher", **FAST)
    ingest = migrated("mipo_ingest")
    world = arrange(owner_dsn("config"), mode="mirror", scanners=1)
    plan(dispatcher, world["template"])
    sid = world["scanners"][0]

    async def claim_one(_: AsyncConnection, jobs: AsyncConnection) -> dict[str, Any]:
        async with jobs.transaction():
            job_id, _, lease_token, *_ = (await ingest_jobs.claim(jobs, sid, 1, 300))[0]
            return {"id": job_id, "lease_token": lease_token}

    def check(job_id: int, token: int) -> str:
        async def work(_: AsyncConnection, jobs: AsyncConnection) -> str:
            try:
                async with jobs.transaction():
                    await locked_lease(jobs, job_id, sid, token)
                return "accepted"
            except Conflict as exc:
                return exc.reason
        return run_async(ingest, work)

    old = run_async(ingest, claim_one)
    assert check(old["id"], old["lease_token"]) == "accepted"
    _age(owner_dsn("jobs"), "UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = %s", old["id"])
    run_async(dispatcher, lambda c, j: reconcile(c, j, dispatcher))
    assert check(old["id"], old["lease_token"]) == "stale_lease"
    new = run_async(ingest, claim_one)
    assert new["id"] == old["id"] and new["lease_token"] > old["lease_token"] + 1
    assert check(new["id"], new["lease_token"]) == "accepted"
    assert check(old["id"], old["lease_token"]) == "stale_lease"

    # The attempt history: written when an attempt ends (by the jobs_attempt_end trigger, as the role that
    # ended it), never by the claim; the attempt in progress is on the job row.
    def history() -> list[tuple[Any, ...]]:
        with psycopg.connect(owner_dsn("jobs")) as conn:
            return conn.execute("SELECT attempt, scanner_id, lease_token, outcome, ended_at >= started_at"
                                " FROM job_attempts WHERE job_id = %s ORDER BY attempt", (old["id"],)).fetchall()

    assert history() == [(1, sid, old["lease_token"], "requeued:lease_expired", True)]
    with psycopg.connect(owner_dsn("jobs")) as conn:
        assert conn.execute("SELECT attempt_started_at IS NOT NULL FROM jobs WHERE id = %s",
                            (old["id"],)).fetchone() == (True,)

    async def finish(_: AsyncConnection, jobs: AsyncConnection) -> None:
        async with jobs.transaction():
            await ingest_jobs.finish(jobs, await locked_lease(jobs, new["id"], sid, new["lease_token"]),
                                     "completed", None, None)

    run_async(ingest, finish)
    assert history() == [(1, sid, old["lease_token"], "requeued:lease_expired", True),
                         (2, sid, new["lease_token"], "completed", True)]


def test_finalisation_runs_change_detection_as_the_dispatcher_role(
        dispatcher: Settings, owner_dsn: Callable[[str], str]) -> None:
    """When a run finishes, the results helper's detection runs with the dispatcher's results-DB grants."""
    cdsn, jdsn = owner_dsn("config"), owner_dsn("jobs")
    world = arrange(cdsn, mode="mirror", scanners=1)
    planned = plan(dispatcher, world["template"])
    sid = world["scanners"][0]
    with psycopg.connect(owner_dsn("results")) as conn:  # what ingest would have stored for the run
        for job in jobs_of(jdsn, planned.run_id):
            complete(jdsn, job["id"])
            conn.execute("INSERT INTO run_coverage (run_id, job_id, scanner_id, targets, ports, complete)"
                         " VALUES (%s, %s, %s, %s, %s, true)",
                         (planned.run_id, job["id"], sid, json.dumps(job["targets"]), job["ports"]))
        conn.execute("INSERT INTO observations (time, run_id, job_id, scanner_id, ip, port)"
                     " VALUES (now(), %s, %s, %s, '198.18.0.1', 22)", (planned.run_id, job["id"], sid))

    async def work(config: AsyncConnection, jobs: AsyncConnection) -> list[int]:
        results = await AsyncConnection.connect(conninfo(dispatcher, "results"), autocommit=True)
        try:
            return await finalise_runs(config, jobs, results)
        finally:
            await results.close()

    assert run_async(dispatcher, work) == [planned.run_id]
    assert events(cdsn, "change_detection_failed") == []
    with psycopg.connect(owner_dsn("results")) as conn:
        summaries = conn.execute("SELECT run_id, scanner_id FROM run_summaries").fetchall()
    assert summaries == [(planned.run_id, world["scanners"][0])]
