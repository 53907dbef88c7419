"""Port state changes: coverage decides what "closed" means; detection is exact and idempotent."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

import psycopg
import pytest

from app.db.connect import conninfo
from app.domain.results.changes import (
    MAX_EVENTS_PER_RUN,
    changes_as_events,
    detect_changes,
    detect_changes_for_run,
)
from tests.conftest import SettingsFactory
from tests.support.results import T0, changes, cover, detect, observe

A, B = 1, 2
NET = [["198.18.0.0", "198.18.0.255"]]


@pytest.fixture()
def dsns(migrated: SettingsFactory, owner_dsn: Callable[[str], str]) -> tuple[str, str]:
    """(owner DSN to arrange data, dispatcher DSN to detect changes as the dispatcher does)."""
    return owner_dsn("results"), conninfo(migrated("mipo_dispatcher"), "results")


def test_first_run_is_a_baseline_without_changes(dsns: tuple[str, str]) -> None:
    """Ports seen for the first time where nothing was scanned before are not reported as 'opened'."""
    owner, dispatcher = dsns
    observe(owner, 1, A, [("198.18.0.10", 22), ("198.18.0.10", 8080)])
    cover(owner, 1, A, NET, "1-1024,8080")
    assert detect(dispatcher, 1) == []


def test_port_disappearing_inside_covered_space_is_one_closed_change(dsns: tuple[str, str]) -> None:
    """An open port not found again by a complete job that scanned it becomes exactly one 'closed'."""
    owner, dispatcher = dsns
    observe(owner, 1, A, [("198.18.0.10", 22), ("198.18.0.10", 8080)])
    cover(owner, 1, A, NET, "1-1024,8080")
    detect(dispatcher, 1)
    observe(owner, 2, A, [("198.18.0.10", 22)])
    cover(owner, 2, A, NET, "1-1024,8080")
    found = detect(dispatcher, 2)
    assert [(c.ip, c.port, c.change) for c in found] == [("198.18.0.10", 8080, "closed")]
    assert found[0].previous_run_id == 1
    assert found[0].before is not None and found[0].after is None
    assert changes(owner) == [(2, A, "198.18.0.10", 8080, "closed")]


def test_port_outside_the_next_runs_coverage_does_not_change(dsns: tuple[str, str]) -> None:
    """Absence outside what was scanned says nothing: a port not covered (port or address) is not 'closed'."""
    owner, dispatcher = dsns
    observe(owner, 1, A, [("198.18.0.10", 8080), ("198.18.0.77", 22)])
    cover(owner, 1, A, NET, "1-1024,8080")
    detect(dispatcher, 1)
    # Run 2 scans only ports 1-1024 of .0-.63: 8080 and the address .77 are both outside its coverage.
    cover(owner, 2, A, [["198.18.0.0", "198.18.0.63"]], "1-1024")
    assert detect(dispatcher, 2) == []
    assert changes(owner) == []


def test_partial_or_failed_jobs_never_close_a_port(dsns: tuple[str, str]) -> None:
    """Only complete coverage turns absence into 'closed'; an interrupted job proves nothing."""
    owner, dispatcher = dsns
    observe(owner, 1, A, [("198.18.0.10", 22)])
    cover(owner, 1, A, NET, "22")
    detect(dispatcher, 1)
    cover(owner, 2, A, NET, "22", complete=False)
    assert detect(dispatcher, 2) == []


def test_port_reopening_after_closed_is_one_opened_change(dsns: tuple[str, str]) -> None:
    """closed → open again is 'opened', with the run it was closed in as the previous run."""
    owner, dispatcher = dsns
    observe(owner, 1, A, [("198.18.0.10", 8080)])
    cover(owner, 1, A, NET, "8080")
    detect(dispatcher, 1)
    cover(owner, 2, A, NET, "8080")
    assert [c.change for c in detect(dispatcher, 2)] == ["closed"]
    observe(owner, 3, A, [("198.18.0.10", 8080, "http", "nginx")])
    cover(owner, 3, A, NET, "8080")
    found = detect(dispatcher, 3)
    assert [(c.change, c.previous_run_id) for c in found] == [("opened", 2)]
    assert found[0].after is not None and found[0].after["banner"] == "nginx"


def test_new_port_inside_earlier_coverage_is_opened(dsns: tuple[str, str]) -> None:
    """A port never seen open, in space an earlier complete job scanned, is 'opened' when it appears."""
    owner, dispatcher = dsns
    observe(owner, 1, A, [("198.18.0.10", 22)])
    cover(owner, 1, A, ["198.18.0.0/24"], "1-1024")
    detect(dispatcher, 1)
    observe(owner, 2, A, [("198.18.0.10", 22), ("198.18.0.20", 443), ("198.18.1.5", 443)])
    cover(owner, 2, A, [["198.18.0.0", "198.18.1.255"]], "1-1024")
    found = detect(dispatcher, 2)
    # .1.5 lies outside run 1's coverage: first seen, a baseline.
    assert [(c.ip, c.port, c.change, c.previous_run_id) for c in found] == [("198.18.0.20", 443, "opened", 1)]


def test_banner_or_certificate_change_is_one_change_each(dsns: tuple[str, str]) -> None:
    """A different banner is one 'service_changed'; a different certificate is one 'certificate_changed'."""
    owner, dispatcher = dsns
    observe(owner, 1, A, [("198.18.0.10", 22, "ssh", "SSH-2.0-OpenSSH_9.2"),
                          ("198.18.0.10", 443, "https", None, "aa" * 32)])
    cover(owner, 1, A, NET, "22,443")
    detect(dispatcher, 1)
    observe(owner, 2, A, [("198.18.0.10", 22, "ssh", "SSH-2.0-OpenSSH_9.6"),
                          ("198.18.0.10", 443, "https", None, "bb" * 32)])
    cover(owner, 2, A, NET, "22,443")
    found = detect(dispatcher, 2)
    assert sorted((c.port, c.change) for c in found) == [(22, "service_changed"), (443, "certificate_changed")]
    ssh = next(c for c in found if c.port == 22)
    assert ssh.before == {"service": "ssh", "banner": "SSH-2.0-OpenSSH_9.2"}
    assert ssh.after == {"service": "ssh", "banner": "SSH-2.0-OpenSSH_9.6"}
    # Unchanged in run 3: no further change.
    observe(owner, 3, A, [("198.18.0.10", 22, "ssh", "SSH-2.0-OpenSSH_9.6"),
                          ("198.18.0.10", 443, "https", None, "bb" * 32)])
    cover(owner, 3, A, NET, "22,443")
    assert detect(dispatcher, 3) == []


def test_rerunning_detection_adds_no_duplicates(dsns: tuple[str, str]) -> None:
    """Detection of the same run twice (a dispatcher restart) stores each change once."""
    owner, dispatcher = dsns
    observe(owner, 1, A, [("198.18.0.10", 22), ("198.18.0.10", 80)])
    cover(owner, 1, A, NET, "1-1024")
    detect(dispatcher, 1)
    observe(owner, 2, A, [("198.18.0.10", 22, "ssh", "new")])
    cover(owner, 2, A, NET, "1-1024")
    first = detect(dispatcher, 2)
    assert sorted(c.change for c in first) == ["closed", "service_changed"]
    assert detect(dispatcher, 2) == []
    assert detect(dispatcher, 1) == []
    assert len(changes(owner)) == 2


def test_each_vantage_point_is_compared_with_its_own_history(dsns: tuple[str, str]) -> None:
    """In a mirror run, scanner B losing sight of a port is B's change only."""
    owner, dispatcher = dsns
    for scanner in (A, B):
        observe(owner, 1, scanner, [("198.18.0.10", 8080)])
        cover(owner, 1, scanner, NET, "8080")
    detect(dispatcher, 1)
    observe(owner, 2, A, [("198.18.0.10", 8080)])
    cover(owner, 2, A, NET, "8080")
    cover(owner, 2, B, NET, "8080")
    assert [(c.scanner_id, c.change) for c in detect(dispatcher, 2)] == [(B, "closed")]


def test_a_port_seen_twice_in_a_run_is_judged_by_its_latest_observation(dsns: tuple[str, str]) -> None:
    """A retried job may report a port twice: the latest observation decides, and no duplicate state arises."""
    owner, dispatcher = dsns
    t = T0 + timedelta(hours=1)
    observe(owner, 1, A, [("198.18.0.10", 22, "ssh", "v1")], at=t)
    observe(owner, 1, A, [("198.18.0.10", 22, "ssh", "v1"), ("198.18.0.10", 80, "http", "old")],
            at=t + timedelta(minutes=1), job_id=999)
    observe(owner, 1, A, [("198.18.0.10", 80, "http", "new")], at=t + timedelta(minutes=2), job_id=998)
    cover(owner, 1, A, NET, "1-1024")
    assert detect(dispatcher, 1) == []
    t2 = T0 + timedelta(hours=2)
    # Run 2: the earlier copy of 22 differs, the later one equals the known state: no change for 22.
    # Port 80's later copy differs from the known state ("new"): one change, with the latest banner.
    observe(owner, 2, A, [("198.18.0.10", 22, "ssh", "v0"), ("198.18.0.10", 80, "http", "new")], at=t2)
    observe(owner, 2, A, [("198.18.0.10", 22, "ssh", "v1"), ("198.18.0.10", 80, "http", "newer")],
            at=t2 + timedelta(minutes=1), job_id=997)
    cover(owner, 2, A, NET, "1-1024")
    found = detect(dispatcher, 2)
    assert [(c.port, c.change, c.after) for c in found] == [
        (80, "service_changed", {"service": "http", "banner": "newer"})]
    with psycopg.connect(owner) as conn:
        summary = conn.execute("SELECT open_ports, hosts_up, changes FROM run_summaries WHERE run_id = 2").fetchone()
    assert summary == (2, 1, 1)


def test_each_change_becomes_an_event_and_a_flood_is_summarised(dsns: tuple[str, str],
                                                                migrated: SettingsFactory) -> None:
    """Operators see 'port_opened'/'port_closed' events; past MAX_EVENTS_PER_RUN one summary says how many more."""
    owner, dispatcher = dsns
    observe(owner, 1, A, [("198.18.0.10", 8080)])
    cover(owner, 1, A, NET, "1-1024,8080")
    detect(dispatcher, 1)
    many = [(f"198.18.0.{h}", p) for h in range(20, 40) for p in range(100, 115)]  # 300 new ports
    observe(owner, 2, A, many)
    cover(owner, 2, A, NET, "1-1024,8080")
    found = detect(dispatcher, 2)
    assert len(found) == 301

    async def emit_all() -> int:
        async with await psycopg.AsyncConnection.connect(conninfo(migrated("mipo_dispatcher"), "config")) as conn:
            async with conn.transaction():
                return await changes_as_events(conn, found)

    assert asyncio.run(emit_all()) == MAX_EVENTS_PER_RUN + 1
    with psycopg.connect(conninfo(migrated(), "config", as_owner=True)) as conn:
        classes = dict(conn.execute("SELECT class, count(*) FROM events GROUP BY class").fetchall())
        summary = conn.execute("SELECT message, details FROM events WHERE class = 'port_changes_summarised'").fetchone()
    assert sum(v for k, v in classes.items() if k in ("port_opened", "port_closed")) == MAX_EVENTS_PER_RUN
    assert classes["port_changes_summarised"] == 1
    assert summary is not None and "101 more port changes" in summary[0]


def test_coverage_reads_cidrs_ipv6_and_tcp_suffixes_and_ignores_unreadable_items(dsns: tuple[str, str]) -> None:
    """Coverage as CIDR strings or IPv6 ranges counts; a port item it cannot read covers nothing (never 'closed')."""
    owner, dispatcher = dsns
    observe(owner, 1, A, [("2001:db8::5", 443), ("198.18.0.10", 22), ("198.18.0.10", 25)])
    cover(owner, 1, A, [["2001:db8::", "2001:db8::ff"], "198.18.0.0/24"], "22/tcp,25,443")
    detect(dispatcher, 1)
    # Run 2 finds nothing; its coverage says 22 and 443/tcp, then items it cannot read (a name, an inverted
    # range that would have covered 25, a number too large).
    cover(owner, 2, A, [["2001:db8::", "2001:db8::ff"], "198.18.0.0/24"], "22,443/tcp,smtp,25-24,999999")
    found = detect(dispatcher, 2)
    assert sorted((c.ip, c.port, c.change) for c in found) == [
        ("198.18.0.10", 22, "closed"), ("2001:db8::5", 443, "closed")]


def test_detection_works_without_a_caller_transaction(dsns: tuple[str, str]) -> None:
    """An autocommit connection still gets one atomic detection (its temp tables live for the transaction)."""
    owner, dispatcher = dsns
    observe(owner, 1, A, [("198.18.0.10", 22)])
    cover(owner, 1, A, NET, "22")
    detect(dispatcher, 1)
    cover(owner, 2, A, NET, "22")

    async def run() -> int:
        async with await psycopg.AsyncConnection.connect(dispatcher, autocommit=True) as conn:
            return await detect_changes_for_run(conn, 2)

    assert asyncio.run(run()) == 1
    assert changes(owner) == [(2, A, "198.18.0.10", 22, "closed")]


def test_one_vantage_points_part_can_be_detected_first(dsns: tuple[str, str]) -> None:
    """Scanner A's part of a mirror run is detected when it finishes; B's later, each exactly once."""
    owner, dispatcher = dsns
    for scanner in (A, B):
        observe(owner, 1, scanner, [("198.18.0.10", 22)])
        cover(owner, 1, scanner, NET, "22")
    detect(dispatcher, 1)
    for scanner in (A, B):
        cover(owner, 2, scanner, NET, "22")

    async def part(scanners: list[int] | None) -> list[int]:
        async with await psycopg.AsyncConnection.connect(dispatcher) as conn:
            async with conn.transaction():
                return [c.scanner_id for c in await detect_changes(conn, 2, scanners)]

    assert asyncio.run(part([A])) == [A]
    assert asyncio.run(part(None)) == [B]
    assert asyncio.run(part(None)) == []
