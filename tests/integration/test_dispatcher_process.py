"""Real dispatcher processes: exactly one leads; kill it and the standby takes over within 30 s."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from tests.conftest import SettingsFactory
from tests.integration.test_dispatcher import arrange
from tests.support.postgres import PostgresServer
from tests.support.services import write_toml
from tests.support.settings import settings_document
from tests.support.waiting import wait_until

TAKEOVER_LIMIT = 30.0
Launcher = Callable[[str], tuple[subprocess.Popen[bytes], Path]]
QUICK = {"tick_seconds": 0.5, "standby_poll_seconds": 0.5, "job_target_seconds": 60.0}


@pytest.fixture()
def dispatcher_config(migrated: SettingsFactory, pg: PostgresServer, databases: dict[str, str],
                      tmp_path: Path) -> Path:
    migrated()
    return write_toml(settings_document(pg, databases, "mipo_dispatcher", dispatcher=QUICK), tmp_path / "mipo.toml")


@pytest.fixture()
def start(dispatcher_config: Path, credentials_dir: Path, tmp_path: Path) -> Iterator[Launcher]:
    procs: list[subprocess.Popen[bytes]] = []

    def launch(name: str) -> tuple[subprocess.Popen[bytes], Path]:
        log = tmp_path / f"{name}.log"
        env = {"CREDENTIALS_DIRECTORY": str(credentials_dir), "PATH": "/usr/bin:/bin"}
        with log.open("ab") as out:
            proc = subprocess.Popen([sys.executable, "-m", "app", "--config", str(dispatcher_config), "dispatcher"],
                                    stdout=out, stderr=subprocess.STDOUT, env=env,
                                    cwd=Path(__file__).resolve().parents[2])
        procs.append(proc)
        return proc, log

    yield launch
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def lock_holder(pg: PostgresServer, jobs_db: str) -> int | None:
    """OS pid of the dispatcher holding the advisory lock (from its application_name), as the superuser sees it."""
    with psycopg.connect(pg.dsn(jobs_db)) as conn:
        row = conn.execute(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.granted AND a.datname = current_database()"
            " AND a.application_name LIKE 'mipo-dispatcher %%'"
        ).fetchone()
    return int(row[0].rsplit("pid=", 1)[1]) if row else None


def request_run(dsn: str, template: int) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute("INSERT INTO run_requests (template_id, requested_by) VALUES (%s, 'test') RETURNING id",
                            (template,)).fetchone()[0]  # type: ignore[index]


def answered(dsn: str, request_id: int) -> int | None:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT run_id FROM run_requests WHERE id = %s", (request_id,)).fetchone()
    return row[0] if row else None


def test_two_dispatchers_one_plans_and_the_standby_takes_over_after_a_kill(
        start: Launcher, pg: PostgresServer,
        databases: dict[str, str], owner_dsn: Callable[[str], str]) -> None:
    """Exactly one instance holds the lock and plans; SIGKILL it and the other plans the next request."""
    cdsn, jdsn = owner_dsn("config"), owner_dsn("jobs")
    world = arrange(cdsn, mode="mirror")
    first, first_log = start("first")
    second, second_log = start("second")
    holder = wait_until(lambda: lock_holder(pg, databases["jobs"]), 30, "a dispatcher taking the lock")
    assert holder in (first.pid, second.pid)
    requests = [request_run(cdsn, world["template"]) for _ in range(3)]
    for req in requests:
        wait_until(lambda: answered(cdsn, req), 30, f"run request {req} being answered")  # noqa: B023 (used at once)
    with psycopg.connect(jdsn) as conn:
        assert conn.execute("SELECT count(*) FROM scan_runs").fetchone() == (3,)
    leader, standby = (first, second) if holder == first.pid else (second, first)
    leader_log, standby_log = (first_log, second_log) if leader is first else (second_log, first_log)
    assert leader_log.read_text().count("jobs, ") == 3  # "run N of 't': J jobs, …" once per run
    assert "standby" in standby_log.read_text() and "jobs, " not in standby_log.read_text()

    os.kill(leader.pid, signal.SIGKILL)
    leader.wait(timeout=10)
    killed_at = time.monotonic()
    late = request_run(cdsn, world["template"])
    wait_until(lambda: lock_holder(pg, databases["jobs"]) == standby.pid, TAKEOVER_LIMIT, "the standby taking over")
    wait_until(lambda: answered(cdsn, late), TAKEOVER_LIMIT - (time.monotonic() - killed_at),
             "the new leader answering the pending run request")
    assert "is the leader" in standby_log.read_text()
    assert standby.poll() is None


def test_dispatcher_stops_cleanly_on_sigterm_and_releases_the_lock(
        start: Launcher, pg: PostgresServer,
        databases: dict[str, str]) -> None:
    proc, log = start("only")
    wait_until(lambda: lock_holder(pg, databases["jobs"]) == proc.pid, 30, "the dispatcher taking the lock")
    proc.terminate()
    assert proc.wait(timeout=15) == 0
    assert lock_holder(pg, databases["jobs"]) is None
    assert "dispatcher stopped" in log.read_text()


def test_restart_mid_due_time_with_real_processes_creates_no_duplicate_run(
        start: Launcher, pg: PostgresServer, databases: dict[str, str], owner_dsn: Callable[[str], str]) -> None:
    """Kill the leader right after it planned a due time, and roll next_run_at back to that due time (the
    config update the crash lost): the restarted dispatcher answers the due time with the same single run."""
    cdsn, jdsn = owner_dsn("config"), owner_dsn("jobs")
    world = arrange(cdsn, mode="mirror")
    with psycopg.connect(cdsn) as conn:
        due = conn.execute("SELECT date_trunc('minute', now())").fetchone()[0]  # type: ignore[index]
        conn.execute("INSERT INTO schedules (name, template_id, cron, next_run_at) VALUES ('every-minute', %s,"
                     " '* * * * *', %s)", (world["template"], due))

    def runs_for_due() -> int:
        with psycopg.connect(jdsn) as conn:
            return int(conn.execute("SELECT count(*) FROM scan_runs WHERE due_at = %s", (due,)).fetchone()[0])  # type: ignore[index]

    first, _ = start("first")
    wait_until(runs_for_due, 30, "the due time becoming a run")
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=10)
    with psycopg.connect(cdsn) as conn:
        conn.execute("UPDATE schedules SET next_run_at = %s", (due,))
    second, _ = start("second")
    marker = request_run(cdsn, world["template"])  # answered after the schedules in the same pass
    wait_until(lambda: answered(cdsn, marker), 30, "the restarted dispatcher completing a pass")
    assert runs_for_due() == 1
    with psycopg.connect(cdsn) as conn:
        next_due = conn.execute("SELECT next_run_at FROM schedules").fetchone()[0]  # type: ignore[index]
    assert next_due > due
    assert second.poll() is None
