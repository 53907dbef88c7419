"""SQL of change detection: one pass over a run's open set against the last known states, then small writes.

The run's observations are read once and full-joined with port_state (the last known state of
each (scanner, address, port) ever seen open); only rows that differ land in temp tables (mipo_diff for known
ports, mipo_new for ports first seen), so everything after the join works on the changes, not on the run.
Unchanged open ports cost no write. A scanner's first detection skips the comparison: nothing is known or was
covered before, so its open set is written as the known state straight from the run.

Join methods are chosen here, not by the planner: a run's freshly ingested chunk and a port_state that grew in the
previous detection have no statistics yet, and the planner then hashes a whole table to update a few rows (or
sorts a whole run to merge it). The shapes are known: one hash full join over the run, index probes for the rest.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import psycopg
from psycopg import AsyncConnection
from psycopg.rows import class_row

from app.domain.results.schemas import PortChangeRead

# Scanners with observations in the run (loose index scan: one probe per scanner, not one row per result)
# or coverage, whose changes were not detected yet: run_summaries is the ledger.
PENDING_SCANNERS = """
WITH RECURSIVE seen AS (
    (SELECT scanner_id FROM observations WHERE run_id = %(run)s ORDER BY scanner_id LIMIT 1)
    UNION ALL
    SELECT (SELECT o.scanner_id FROM observations o WHERE o.run_id = %(run)s AND o.scanner_id > seen.scanner_id
            ORDER BY o.scanner_id LIMIT 1)
    FROM seen WHERE seen.scanner_id IS NOT NULL
)
SELECT s.scanner_id FROM (
    SELECT scanner_id FROM seen WHERE scanner_id IS NOT NULL
    UNION
    SELECT DISTINCT scanner_id FROM run_coverage WHERE run_id = %(run)s
) s
WHERE NOT EXISTS (SELECT 1 FROM run_summaries r WHERE r.run_id = %(run)s AND r.scanner_id = s.scanner_id)
ORDER BY 1
"""

# The run's open observations, read once per detection (materialised: the statement needs them twice), and the
# hosts up per scanner counted from them on the way.
RUN_OPEN = """
run_open AS MATERIALIZED (
    SELECT scanner_id, ip, port, proto, time, service, banner, tls_subject, tls_not_after, tls_sha256
    FROM observations
    WHERE run_id = %(run)s AND scanner_id = ANY(%(scanners)s) AND state = 'open'
), hosts AS (
    INSERT INTO mipo_counts
    SELECT scanner_id, count(*) FROM (SELECT scanner_id, ip FROM run_open GROUP BY scanner_id, ip) h
    GROUP BY scanner_id
)"""

# A scanner's first detection: no earlier state or coverage (both are written only by detection, together with
# run_summaries, which retention keeps), so every port it saw open is a baseline.
FIRST_SCAN = "SELECT NOT EXISTS (SELECT 1 FROM run_summaries WHERE scanner_id = ANY(%(scanners)s))"

# The first scan's open set becomes the known state in one insert, without a comparison or a temp table. A port
# observed twice in the run raises a unique violation; the general path below then resolves the copies.
FIRST_STATE = f"""
WITH {RUN_OPEN}
INSERT INTO port_state (scanner_id, ip, port, proto, open, service, banner, tls_subject, tls_not_after,
                        tls_sha256, first_seen_run, first_seen_at, since_run, since_at)
SELECT scanner_id, ip, port, proto, true, service, banner, tls_subject, tls_not_after, tls_sha256,
       %(run)s, time, %(run)s, time
FROM run_open
"""

# This run's complete coverage; stored in coverage_cells only after the comparison, so the look-ups for
# "was it covered before" see earlier runs only.
RUN_CELLS = """
CREATE TEMP TABLE mipo_cells ON COMMIT DROP AS
SELECT job_id, scanner_id, finished_at, ips, ports
FROM coverage_rectangles(%(run)s)
WHERE complete AND scanner_id = ANY(%(scanners)s)
"""

TEMP_TABLES = """
CREATE TEMP TABLE mipo_counts (scanner_id bigint, hosts_up bigint) ON COMMIT DROP;
CREATE TEMP TABLE mipo_diff (
    scanner_id bigint, ip inet, port integer, proto text,
    seen boolean, time timestamptz, service text, banner text, tls_subject text, tls_not_after timestamptz,
    tls_sha256 text,
    known boolean, was_open boolean, s_service text, s_banner text, s_tls_subject text,
    s_tls_not_after timestamptz, s_tls_sha256 text, since_run bigint
) ON COMMIT DROP;
CREATE TEMP TABLE mipo_new (
    scanner_id bigint, ip inet, port integer, proto text, time timestamptz, service text, banner text,
    tls_subject text, tls_not_after timestamptz, tls_sha256 text
) ON COMMIT DROP
"""


# The run's open observations against the known states of the same scanners, in one hash full join;
# only rows that differ (or are new, or vanished while open) are kept.
# Rows of ports with a known state go to mipo_diff; ports first seen go to mipo_new. On a first scan
# that is the whole run, and the steps that only concern known ports then do not scan it.
DIFF = f"""
WITH {RUN_OPEN}, d AS MATERIALIZED (
    SELECT coalesce(c.scanner_id, s.scanner_id) AS scanner_id, coalesce(c.ip, s.ip) AS ip,
           coalesce(c.port, s.port) AS port, coalesce(c.proto, s.proto) AS proto,
           c.scanner_id IS NOT NULL AS seen, c.time, c.service, c.banner, c.tls_subject, c.tls_not_after,
           c.tls_sha256, s.scanner_id IS NOT NULL AS known, s.open AS was_open, s.service AS s_service,
           s.banner AS s_banner, s.tls_subject AS s_tls_subject, s.tls_not_after AS s_tls_not_after,
           s.tls_sha256 AS s_tls_sha256, s.since_run
    FROM run_open c
    FULL JOIN (SELECT * FROM port_state WHERE scanner_id = ANY(%(scanners)s)) s
           ON c.ip = s.ip AND c.port = s.port AND c.proto = s.proto AND c.scanner_id = s.scanner_id
    WHERE s.scanner_id IS NULL
       OR (c.scanner_id IS NULL AND s.open)
       OR (c.scanner_id IS NOT NULL AND (NOT s.open OR c.service IS DISTINCT FROM s.service
           OR c.banner IS DISTINCT FROM s.banner OR c.tls_sha256 IS DISTINCT FROM s.tls_sha256))
), new AS (
    INSERT INTO mipo_new
    SELECT scanner_id, ip, port, proto, time, service, banner, tls_subject, tls_not_after, tls_sha256
    FROM d WHERE NOT known
)
INSERT INTO mipo_diff SELECT * FROM d WHERE known
"""

# A port observed more than once in the run (a retried job) is judged by its latest observation. For known
# ports (few rows: only those that differ) drop superseded copies here — inside the diff, and where a later
# observation equal to the known state left no row in it. Copies of *new* ports are resolved when their plain
# insert fails on the key (STATE_INSERT_NEW_LATEST below), which costs nothing when there are none.
DEDUPE_KNOWN = """
DELETE FROM mipo_diff WHERE ctid IN (
    SELECT ctid FROM (
        SELECT ctid, row_number() OVER (PARTITION BY scanner_id, ip, port, proto ORDER BY time DESC) AS copy
        FROM mipo_diff WHERE seen AND known
    ) x WHERE copy > 1)
"""
DEDUPE_SUPERSEDED = """
DELETE FROM mipo_diff d
WHERE d.seen AND d.known AND EXISTS (
    SELECT 1 FROM observations o
    WHERE o.ip = d.ip AND o.port = d.port AND o.proto = d.proto AND o.scanner_id = d.scanner_id
      AND o.run_id = %(run)s AND o.state = 'open' AND o.time > d.time)
"""
# The same, one index probe per row: a freshly ingested chunk has no statistics, so the planner would hash
# the whole run for a few thousand rows. Used below PROBE_LIMIT rows; above it, hashing the run is cheaper.
DEDUPE_SUPERSEDED_PROBES = """
DELETE FROM mipo_diff WHERE ctid IN (
    SELECT d.ctid FROM mipo_diff d
    CROSS JOIN LATERAL (
        -- run_id + 0: not an index condition, so the probe walks (ip, port, time) and never the whole run.
        SELECT 1 FROM observations o
        WHERE o.ip = d.ip AND o.port = d.port AND o.proto = d.proto AND o.scanner_id = d.scanner_id
          AND o.run_id + 0 = %(run)s AND o.state = 'open' AND o.time > d.time
        LIMIT 1) later
    WHERE d.seen AND d.known)
"""
PROBE_LIMIT = 50_000

# Does any earlier complete coverage of these scanners touch the addresses first seen in this run?
# When not (a first scan, or new space), the per-address look-up below is skipped.
EARLIER_COVERAGE = """
SELECT EXISTS (
    SELECT 1 FROM coverage_cells cc
    JOIN (SELECT scanner_id, min(ip) AS lo, max(ip) AS hi FROM mipo_new GROUP BY scanner_id, family(ip)) n
      ON cc.scanner_id = n.scanner_id AND cc.ips && inetrange(n.lo, n.hi, '[]')
)
"""

_SERVICE = "jsonb_build_object('service', {p}service, 'banner', {p}banner)"
_TLS = ("jsonb_build_object('tls_sha256', {p}tls_sha256, 'tls_subject', {p}tls_subject,"
        " 'tls_not_after', {p}tls_not_after)")
_STATE = ("jsonb_build_object('service', {p}service, 'banner', {p}banner, 'tls_sha256', {p}tls_sha256,"
          " 'tls_subject', {p}tls_subject, 'tls_not_after', {p}tls_not_after)")


def _j(template: str, prefix: str) -> str:
    return template.format(p=prefix)


# A port is closed only inside this run's *complete* coverage (mipo_cells holds nothing else), and opened
# only where its earlier state was known: closed in port_state, or inside earlier complete coverage of the
# same scanner. A port first seen where nothing was covered before is a baseline, not a change.
_CHANGES = f"""
SELECT scanner_id, ip, port, proto, 'service_changed'::text AS change, since_run AS previous_run_id,
       {_j(_SERVICE, 's_')} AS before, {_j(_SERVICE, '')} AS after, time
FROM mipo_diff WHERE seen AND known AND was_open
  AND (service IS DISTINCT FROM s_service OR banner IS DISTINCT FROM s_banner)
UNION ALL
SELECT scanner_id, ip, port, proto, 'certificate_changed', since_run, {_j(_TLS, 's_')}, {_j(_TLS, '')}, time
FROM mipo_diff WHERE seen AND known AND was_open AND tls_sha256 IS DISTINCT FROM s_tls_sha256
UNION ALL
SELECT scanner_id, ip, port, proto, 'opened', since_run, NULL, {_j(_STATE, '')}, time
FROM mipo_diff WHERE seen AND known AND NOT was_open
UNION ALL
SELECT d.scanner_id, d.ip, d.port, d.proto, 'opened', k.run_id, NULL, {_j(_STATE, 'd.')}, d.time
FROM mipo_new d
CROSS JOIN LATERAL (
    SELECT max(cc.run_id) AS run_id FROM coverage_cells cc
    WHERE cc.scanner_id = d.scanner_id AND cc.ips @> d.ip AND cc.ports @> d.port
) k
WHERE %(earlier)s AND d.proto = 'tcp' AND k.run_id IS NOT NULL
UNION ALL
SELECT d.scanner_id, d.ip, d.port, d.proto, 'closed', d.since_run,
       jsonb_build_object('service', d.s_service, 'banner', d.s_banner, 'tls_sha256', d.s_tls_sha256,
                          'tls_subject', d.s_tls_subject, 'tls_not_after', d.s_tls_not_after), NULL, d.time
FROM mipo_diff d
WHERE NOT d.seen AND d.was_open AND d.proto = 'tcp'
  AND EXISTS (SELECT 1 FROM mipo_cells m WHERE m.scanner_id = d.scanner_id AND m.ips @> d.ip
              AND m.ports @> d.port)
"""

STORE_CHANGES = f"""
INSERT INTO port_changes (run_id, previous_run_id, scanner_id, ip, port, proto, change, before, after)
SELECT %(run)s, previous_run_id, scanner_id, ip, port, proto, change, before, after FROM ({_CHANGES}) ch
ORDER BY scanner_id, ip, port, change, time DESC NULLS LAST  -- the latest copy of a port seen twice wins
ON CONFLICT (run_id, scanner_id, ip, port, proto, change) DO NOTHING
RETURNING id, detected_at, run_id, previous_run_id, scanner_id, host(ip) AS ip, port, proto, change, before, after
"""

# Only rows whose state changed are written: an unchanged open port costs a join, not an update.
STATE_UPDATE_SEEN = """
UPDATE port_state s SET open = true, service = d.service, banner = d.banner, tls_subject = d.tls_subject,
       tls_not_after = d.tls_not_after, tls_sha256 = d.tls_sha256,
       since_run = CASE WHEN d.was_open THEN s.since_run ELSE %(run)s END,
       since_at = CASE WHEN d.was_open THEN s.since_at ELSE d.time END
FROM mipo_diff d
WHERE d.seen AND d.known
  AND s.ip = d.ip AND s.port = d.port AND s.proto = d.proto AND s.scanner_id = d.scanner_id
"""

STATE_CLOSE = """
UPDATE port_state s SET open = false, since_run = %(run)s, since_at = now()
FROM port_changes p
WHERE p.run_id = %(run)s AND p.scanner_id = ANY(%(scanners)s) AND p.change = 'closed'
  AND s.ip = p.ip AND s.port = p.port AND s.proto = p.proto AND s.scanner_id = p.scanner_id
"""

STATE_INSERT_NEW = """
INSERT INTO port_state (scanner_id, ip, port, proto, open, service, banner, tls_subject, tls_not_after,
                        tls_sha256, first_seen_run, first_seen_at, since_run, since_at)
SELECT scanner_id, ip, port, proto, true, service, banner, tls_subject, tls_not_after, tls_sha256,
       %(run)s, time, %(run)s, time
FROM mipo_new
"""

STATE_INSERT_NEW_LATEST = """
INSERT INTO port_state (scanner_id, ip, port, proto, open, service, banner, tls_subject, tls_not_after,
                        tls_sha256, first_seen_run, first_seen_at, since_run, since_at)
SELECT DISTINCT ON (scanner_id, ip, port, proto)
       scanner_id, ip, port, proto, true, service, banner, tls_subject, tls_not_after, tls_sha256,
       %(run)s, time, %(run)s, time
FROM mipo_new
ORDER BY scanner_id, ip, port, proto, time DESC
"""

STORE_COVERAGE = """
INSERT INTO coverage_cells (run_id, job_id, scanner_id, finished_at, ips, ports)
SELECT %(run)s, job_id, scanner_id, finished_at, ips, ports FROM mipo_cells
"""

# The run's open ports without re-reading it: open now in port_state, plus those this run closed, minus
# those open before that it did not see (outside its coverage, so still open).
SUMMARIES = """
INSERT INTO run_summaries (run_id, scanner_id, open_ports, hosts_up, changes)
SELECT %(run)s, v.scanner_id,
       coalesce(st.open_now, 0) + coalesce(ch.closed, 0)
       - (SELECT count(*) FROM mipo_diff d WHERE d.scanner_id = v.scanner_id AND NOT d.seen AND d.was_open),
       coalesce(h.hosts_up, 0), coalesce(ch.total, 0)
FROM unnest(%(scanners)s::bigint[]) AS v(scanner_id)
LEFT JOIN mipo_counts h ON h.scanner_id = v.scanner_id
LEFT JOIN (SELECT scanner_id, count(*) AS open_now FROM port_state
           WHERE open AND scanner_id = ANY(%(scanners)s) GROUP BY scanner_id) st ON st.scanner_id = v.scanner_id
LEFT JOIN (SELECT scanner_id, count(*) AS total, count(*) FILTER (WHERE change = 'closed') AS closed
           FROM port_changes WHERE run_id = %(run)s GROUP BY scanner_id) ch ON ch.scanner_id = v.scanner_id
ON CONFLICT (run_id, scanner_id) DO NOTHING
"""


async def pending_scanners(conn: AsyncConnection, run_id: int) -> list[int]:
    cur = await conn.execute(PENDING_SCANNERS, {"run": run_id})
    return [int(r[0]) for r in await cur.fetchall()]


async def _plan(conn: AsyncConnection, *, hash_join: bool, merge_join: bool, nested_loop: bool) -> None:
    """Allow only the given join methods for the next statements of this transaction."""
    for name, on in (("hashjoin", hash_join), ("mergejoin", merge_join), ("nestloop", nested_loop)):
        await conn.execute(f"SET LOCAL enable_{name} = {'on' if on else 'off'}")


async def _count(conn: AsyncConnection, sql: str, params: dict[str, object] | None = None) -> int:
    row = await (await conn.execute(sql, params)).fetchone()
    return int(row[0]) if row else 0


async def _first_scan(conn: AsyncConnection, params: dict[str, object]) -> bool:
    """Write a first scan's open set as the known state; False (nothing written) when the general path must run."""
    if not await _count(conn, FIRST_SCAN, params):
        return False
    try:
        async with conn.transaction():  # a savepoint: a port seen twice in the run falls back to the general path
            await conn.execute(FIRST_STATE, params)
        return True
    except psycopg.errors.UniqueViolation:
        return False


async def detect(conn: AsyncConnection, run_id: int, scanners: list[int], *, with_rows: bool = True,
                 timings: dict[str, float] | None = None) -> tuple[int, list[PortChangeRead]]:
    """Run the detection statements in the caller's transaction; returns how many changes were stored and,
    when asked, the changes themselves (decoding 10k rows costs more than detecting them). `timings`, when
    given, receives the seconds each step took."""
    params: dict[str, object] = {"run": run_id, "scanners": scanners}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        if timings is not None:
            timings[name] = timings.get(name, 0.0) + now - clock
        clock = now

    # Its own transaction (a savepoint inside the caller's): the temp tables live ON COMMIT DROP, and the SET LOCALs
    # below are undone when the caller's transaction ends.
    async with conn.transaction():
        # Hashing and sorting a run's open set (up to millions of rows) in memory, for this transaction only;
        # JIT compilation costs more than it saves on these one-off statements.
        await conn.execute("SET LOCAL work_mem = '256MB'")
        await conn.execute("SET LOCAL jit = off")
        await conn.execute("DROP TABLE IF EXISTS mipo_cells, mipo_counts, mipo_diff, mipo_new")
        await conn.execute(RUN_CELLS, params)
        await conn.execute(TEMP_TABLES)
        lap("setup")
        stored: list[PortChangeRead] = []
        count = 0
        if await _first_scan(conn, params):
            lap("state")
        else:
            count, stored = await _compare(conn, params, with_rows, lap)
        await _plan(conn, hash_join=True, merge_join=True, nested_loop=True)
        await conn.execute(STORE_COVERAGE, params)
        await conn.execute(SUMMARIES, params)
        await conn.execute("DROP TABLE mipo_cells, mipo_counts, mipo_diff, mipo_new")
    lap("summary")
    return count, stored


async def _compare(conn: AsyncConnection, params: dict[str, object], with_rows: bool,
                   lap: Callable[[str], None]) -> tuple[int, list[PortChangeRead]]:
    """The run against the known states: the diff, its changes, and the known states brought up to date."""
    # One pass over the run and the known states: a hash full join, whatever the (missing) statistics say.
    await _plan(conn, hash_join=True, merge_join=False, nested_loop=False)
    await conn.execute(DIFF, params)
    await conn.execute("ANALYZE mipo_diff")
    lap("diff")
    await conn.execute(DEDUPE_KNOWN)
    seen_known = await _count(conn, "SELECT count(*) FROM mipo_diff WHERE seen AND known")
    few = seen_known <= PROBE_LIMIT and await _count(conn, "SELECT count(*) FROM mipo_diff") <= PROBE_LIMIT
    # Few differing rows (the usual case): index probes into observations and port_state, never a scan of either.
    await _plan(conn, hash_join=not few, merge_join=not few, nested_loop=True)
    if seen_known:
        await conn.execute(DEDUPE_SUPERSEDED_PROBES if few else DEDUPE_SUPERSEDED, params)
    lap("dedupe")
    params["earlier"] = bool(await _count(conn, EARLIER_COVERAGE))
    stored: list[PortChangeRead] = []
    if with_rows:
        async with conn.cursor(row_factory=class_row(PortChangeRead)) as cur:
            await cur.execute(STORE_CHANGES, params)
            stored = await cur.fetchall()
            count = len(stored)
    else:
        count = (await conn.execute(STORE_CHANGES.split("RETURNING")[0], params)).rowcount
    lap("changes")
    await conn.execute(STATE_UPDATE_SEEN, params)
    await conn.execute(STATE_CLOSE, params)
    try:
        async with conn.transaction():  # a savepoint: the plain insert is the fast path
            await conn.execute(STATE_INSERT_NEW, params)
    except psycopg.errors.UniqueViolation:
        await conn.execute(STATE_INSERT_NEW_LATEST, params)  # a new port observed twice in the run
    lap("state")
    return count, stored
