"""SQL of change detection: set-based statements over one run, its coverage and the last known port states."""

from __future__ import annotations

from psycopg import AsyncConnection
from psycopg.rows import class_row

from app.domain.results.schemas import PortChangeRead

# Scanners of the run whose changes were not detected yet (run_summaries is the ledger).
PENDING_SCANNERS = """
SELECT s.scanner_id FROM (
    SELECT DISTINCT scanner_id FROM run_coverage WHERE run_id = %(run)s
    UNION
    SELECT DISTINCT scanner_id FROM observations WHERE run_id = %(run)s
) s
WHERE NOT EXISTS (SELECT 1 FROM run_summaries r WHERE r.run_id = %(run)s AND r.scanner_id = s.scanner_id)
ORDER BY 1
"""

# This run's complete coverage; stored in coverage_cells only after the comparison, so the GiST look-ups
# for "was it covered before" see earlier runs only.
RUN_CELLS = """
CREATE TEMP TABLE mipo_cells ON COMMIT DROP AS
SELECT job_id, scanner_id, finished_at, ips, ports
FROM coverage_rectangles(%(run)s)
WHERE complete AND scanner_id = ANY(%(scanners)s)
"""

STORE_COVERAGE = """
INSERT INTO coverage_cells (run_id, job_id, scanner_id, finished_at, ips, ports)
SELECT %(run)s, job_id, scanner_id, finished_at, ips, ports FROM mipo_cells
"""

# The run's open set, one row per (scanner, address, port): a retried job may have seen a port twice.
CURRENT_OPEN = """
CREATE TEMP TABLE mipo_cur ON COMMIT DROP AS
SELECT DISTINCT ON (scanner_id, ip, port, proto)
       scanner_id, ip, port, proto, time, service, banner, tls_subject, tls_not_after, tls_sha256
FROM observations
WHERE run_id = %(run)s AND scanner_id = ANY(%(scanners)s) AND state = 'open'
ORDER BY scanner_id, ip, port, proto, time DESC
"""

_SERVICE = "jsonb_build_object('service', {a}.service, 'banner', {a}.banner)"
_TLS = ("jsonb_build_object('tls_sha256', {a}.tls_sha256, 'tls_subject', {a}.tls_subject,"
        " 'tls_not_after', {a}.tls_not_after)")
_STATE = ("jsonb_build_object('service', {a}.service, 'banner', {a}.banner, 'tls_sha256', {a}.tls_sha256,"
          " 'tls_subject', {a}.tls_subject, 'tls_not_after', {a}.tls_not_after)")


def _j(template: str, alias: str) -> str:
    return template.format(a=alias)


# Every change of the run against the last known state (port_state) and earlier complete coverage.
# A port counts as closed only inside this run's *complete* coverage (coverage_cells holds nothing else),
# and as opened only where its earlier state was known: closed in port_state, or inside an earlier
# complete coverage of the same scanner. A port first seen where nothing was covered before is a baseline.
CHANGES = f"""
CREATE TEMP TABLE mipo_changes ON COMMIT DROP AS
SELECT c.scanner_id, c.ip, c.port, c.proto, 'service_changed'::text AS change, s.since_run AS previous_run_id,
       {_j(_SERVICE, 's')} AS before, {_j(_SERVICE, 'c')} AS after
FROM mipo_cur c JOIN port_state s USING (scanner_id, ip, port, proto)
WHERE s.open AND (c.service IS DISTINCT FROM s.service OR c.banner IS DISTINCT FROM s.banner)
UNION ALL
SELECT c.scanner_id, c.ip, c.port, c.proto, 'certificate_changed', s.since_run,
       {_j(_TLS, 's')}, {_j(_TLS, 'c')}
FROM mipo_cur c JOIN port_state s USING (scanner_id, ip, port, proto)
WHERE s.open AND c.tls_sha256 IS DISTINCT FROM s.tls_sha256
UNION ALL
SELECT c.scanner_id, c.ip, c.port, c.proto, 'opened', s.since_run, NULL, {_j(_STATE, 'c')}
FROM mipo_cur c JOIN port_state s USING (scanner_id, ip, port, proto)
WHERE NOT s.open
UNION ALL
SELECT n.scanner_id, n.ip, n.port, n.proto, 'opened', k.run_id, NULL, {_j(_STATE, 'n')}
FROM (SELECT * FROM mipo_cur c WHERE c.proto = 'tcp' AND NOT EXISTS (
          SELECT 1 FROM port_state s WHERE s.scanner_id = c.scanner_id AND s.ip = c.ip
          AND s.port = c.port AND s.proto = c.proto)) n
CROSS JOIN LATERAL (
    SELECT max(cc.run_id) AS run_id FROM coverage_cells cc
    WHERE cc.scanner_id = n.scanner_id AND cc.ips @> n.ip AND cc.ports @> n.port
) k
WHERE k.run_id IS NOT NULL
UNION ALL
SELECT s.scanner_id, s.ip, s.port, s.proto, 'closed', s.since_run, {_j(_STATE, 's')}, NULL
FROM port_state s
WHERE s.scanner_id = ANY(%(scanners)s) AND s.open AND s.proto = 'tcp'
  AND NOT EXISTS (SELECT 1 FROM mipo_cur c WHERE c.scanner_id = s.scanner_id AND c.ip = s.ip
                  AND c.port = s.port AND c.proto = s.proto)
  AND EXISTS (SELECT 1 FROM mipo_cells cc WHERE cc.scanner_id = s.scanner_id
              AND cc.ips @> s.ip AND cc.ports @> s.port)
"""

STORE_CHANGES = """
INSERT INTO port_changes (run_id, previous_run_id, scanner_id, ip, port, proto, change, before, after)
SELECT %(run)s, previous_run_id, scanner_id, ip, port, proto, change, before, after FROM mipo_changes
ORDER BY scanner_id, ip, port, change
ON CONFLICT (run_id, scanner_id, ip, port, proto, change) DO NOTHING
RETURNING id, detected_at, run_id, previous_run_id, scanner_id, host(ip) AS ip, port, proto, change, before, after
"""

# Only rows whose state changed are written: an unchanged open port costs a join, not an update.
STATE_REOPEN_OR_UPDATE = """
UPDATE port_state s SET open = true, service = c.service, banner = c.banner, tls_subject = c.tls_subject,
       tls_not_after = c.tls_not_after, tls_sha256 = c.tls_sha256,
       since_run = CASE WHEN s.open THEN s.since_run ELSE %(run)s END,
       since_at = CASE WHEN s.open THEN s.since_at ELSE c.time END
FROM mipo_cur c
WHERE c.scanner_id = s.scanner_id AND c.ip = s.ip AND c.port = s.port AND c.proto = s.proto
  AND (NOT s.open OR c.service IS DISTINCT FROM s.service OR c.banner IS DISTINCT FROM s.banner
       OR c.tls_sha256 IS DISTINCT FROM s.tls_sha256)
"""

STATE_CLOSE = """
UPDATE port_state s SET open = false, since_run = %(run)s, since_at = now()
FROM mipo_changes ch
WHERE ch.change = 'closed' AND ch.scanner_id = s.scanner_id AND ch.ip = s.ip AND ch.port = s.port
  AND ch.proto = s.proto
"""

STATE_INSERT_NEW = """
INSERT INTO port_state (scanner_id, ip, port, proto, open, service, banner, tls_subject, tls_not_after,
                        tls_sha256, first_seen_run, first_seen_at, since_run, since_at)
SELECT c.scanner_id, c.ip, c.port, c.proto, true, c.service, c.banner, c.tls_subject, c.tls_not_after,
       c.tls_sha256, %(run)s, c.time, %(run)s, c.time
FROM mipo_cur c
WHERE NOT EXISTS (SELECT 1 FROM port_state s WHERE s.scanner_id = c.scanner_id AND s.ip = c.ip
                  AND s.port = c.port AND s.proto = c.proto)
"""

SUMMARIES = """
INSERT INTO run_summaries (run_id, scanner_id, open_ports, hosts_up, changes)
SELECT %(run)s, v.scanner_id,
       (SELECT count(*) FROM mipo_cur c WHERE c.scanner_id = v.scanner_id),
       (SELECT count(DISTINCT ip) FROM mipo_cur c WHERE c.scanner_id = v.scanner_id),
       (SELECT count(*) FROM port_changes p WHERE p.run_id = %(run)s AND p.scanner_id = v.scanner_id)
FROM unnest(%(scanners)s::bigint[]) AS v(scanner_id)
ON CONFLICT (run_id, scanner_id) DO NOTHING
"""


async def pending_scanners(conn: AsyncConnection, run_id: int) -> list[int]:
    cur = await conn.execute(PENDING_SCANNERS, {"run": run_id})
    return [int(r[0]) for r in await cur.fetchall()]


async def detect(conn: AsyncConnection, run_id: int, scanners: list[int]) -> list[PortChangeRead]:
    """Run the detection statements in the caller's transaction; returns the changes stored."""
    params = {"run": run_id, "scanners": scanners}
    # Sorting and hashing a run's open set (up to millions of rows) in memory, for this transaction only.
    await conn.execute("SET LOCAL work_mem = '128MB'")
    await conn.execute("DROP TABLE IF EXISTS mipo_cur, mipo_changes, mipo_cells")
    await conn.execute(RUN_CELLS, params)
    await conn.execute(CURRENT_OPEN, params)
    await conn.execute("ANALYZE mipo_cur")
    await conn.execute(CHANGES, params)
    async with conn.cursor(row_factory=class_row(PortChangeRead)) as cur:
        await cur.execute(STORE_CHANGES, params)
        stored = await cur.fetchall()
    await conn.execute(STATE_REOPEN_OR_UPDATE, params)
    await conn.execute(STATE_CLOSE, params)
    await conn.execute(STATE_INSERT_NEW, params)
    await conn.execute(STORE_COVERAGE, params)
    await conn.execute(SUMMARIES, params)
    await conn.execute("DROP TABLE mipo_cur, mipo_changes, mipo_cells")
    return stored
