"""SQL of the results read side: observations, changes, summaries, cross-vantage, point-in-time, host history."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from psycopg import AsyncConnection
from psycopg.rows import class_row
from psycopg.types.json import set_json_loads

from app.domain.results.schemas import (
    ChangeFilter,
    ObservationRead,
    OpenPortRead,
    PortChangeRead,
    PortHistory,
    RunSummaryRead,
    VantageDifference,
)

OBSERVATION_COLUMNS = (
    "time, run_id, job_id, scanner_id, host(ip) AS ip, port, proto, state, service, banner, tls_subject,"
    " tls_issuer, tls_sans, tls_not_after, tls_sha256, rtt_ms"
)
CHANGE_COLUMNS = ("id, detected_at, run_id, previous_run_id, scanner_id, host(ip) AS ip, port, proto, change,"
                  " before, after")

# Keyset pagination over (ip, port, time): stable while results are appended, no OFFSET scans.
OBSERVATIONS = f"""
SELECT {OBSERVATION_COLUMNS} FROM observations
WHERE (%(run)s::bigint IS NULL OR run_id = %(run)s)
  AND (%(scanner)s::bigint IS NULL OR scanner_id = %(scanner)s)
  AND (%(subnet)s::cidr IS NULL OR ip <<= %(subnet)s::cidr)
  AND (%(port)s::int IS NULL OR port = %(port)s)
  AND (%(since)s::timestamptz IS NULL OR time >= %(since)s)
  AND (%(until)s::timestamptz IS NULL OR time < %(until)s)
  AND (%(after_ip)s::inet IS NULL OR (ip, port, time) > (%(after_ip)s::inet, %(after_port)s::int, %(after_time)s))
ORDER BY ip, port, time
"""

CHANGES = f"""
SELECT {CHANGE_COLUMNS} FROM port_changes
WHERE (%(runs)s::bigint[] IS NULL OR run_id = ANY(%(runs)s))
  AND (%(scanner)s::bigint IS NULL OR scanner_id = %(scanner)s)
  AND (%(subnet)s::cidr IS NULL OR ip <<= %(subnet)s::cidr)
  AND (%(port)s::int IS NULL OR port = %(port)s)
  AND (%(change)s::text IS NULL OR change = %(change)s)
  AND (%(since)s::timestamptz IS NULL OR detected_at >= %(since)s)
  AND (%(until)s::timestamptz IS NULL OR detected_at < %(until)s)
  AND (%(before_id)s::bigint IS NULL OR id < %(before_id)s)
ORDER BY id DESC
"""

SUMMARIES = """
SELECT run_id, scanner_id, open_ports, hosts_up, changes, computed_at FROM run_summaries
WHERE (%(run)s::bigint IS NULL OR run_id = %(run)s)
  AND (%(before_run)s::bigint IS NULL OR run_id < %(before_run)s)
ORDER BY run_id DESC, scanner_id LIMIT %(limit)s
"""

# Disagreements of a mirror run: keys open from fewer than all the run's scanners, then for each other
# scanner whether its complete coverage included the key (closed from it) or not (it cannot say).
CROSS_VANTAGE = """
WITH cells AS MATERIALIZED (
    SELECT scanner_id, ips, ports FROM coverage_rectangles(%(run)s) WHERE complete
), scanners AS MATERIALIZED (
    SELECT DISTINCT scanner_id FROM run_coverage WHERE run_id = %(run)s
    UNION SELECT DISTINCT scanner_id FROM observations WHERE run_id = %(run)s
), keys AS (
    SELECT ip, port, proto, array_agg(DISTINCT scanner_id ORDER BY scanner_id) AS open_from
    FROM observations WHERE run_id = %(run)s AND state = 'open'
      AND (%(after_ip)s::inet IS NULL OR (ip, port) > (%(after_ip)s::inet, %(after_port)s::int))
    GROUP BY ip, port, proto
), split AS (
    SELECT k.ip, k.port, k.proto, k.open_from,
           ARRAY(SELECT s.scanner_id FROM scanners s WHERE s.scanner_id <> ALL(k.open_from)
                 AND EXISTS (SELECT 1 FROM cells c WHERE c.scanner_id = s.scanner_id AND k.proto = 'tcp'
                             AND c.ips @> k.ip AND c.ports @> k.port) ORDER BY 1) AS closed_from,
           ARRAY(SELECT s.scanner_id FROM scanners s WHERE s.scanner_id <> ALL(k.open_from)
                 AND NOT EXISTS (SELECT 1 FROM cells c WHERE c.scanner_id = s.scanner_id AND k.proto = 'tcp'
                                 AND c.ips @> k.ip AND c.ports @> k.port) ORDER BY 1) AS not_covered_by
    FROM keys k
    WHERE cardinality(k.open_from) < (SELECT count(*) FROM scanners)
)
SELECT host(ip) AS ip, port, proto, open_from, closed_from, not_covered_by FROM split
WHERE cardinality(closed_from) > 0 OR %(include_uncovered)s
ORDER BY split.ip, port LIMIT %(limit)s
"""

# What was open at T: per (scanner, address, port) the latest observation at or before T, unless a later
# complete coverage of that scanner, finished by T, scanned it and did not find it open.
POINT_IN_TIME = """
WITH latest AS (
    SELECT DISTINCT ON (ip, port, scanner_id, proto)
           scanner_id, ip, port, proto, time, run_id, service, banner, tls_sha256
    FROM observations
    WHERE time <= %(at)s AND time > %(at)s - make_interval(days => %(lookback)s) AND state = 'open'
      AND (%(scanner)s::bigint IS NULL OR scanner_id = %(scanner)s)
      AND (%(subnet)s::cidr IS NULL OR ip <<= %(subnet)s::cidr)
      AND (%(port)s::int IS NULL OR port = %(port)s)
      AND (%(after_ip)s::inet IS NULL OR (ip, port, scanner_id) > (%(after_ip)s::inet, %(after_port)s::int,
                                                                    %(after_scanner)s::bigint))
    ORDER BY ip, port, scanner_id, proto, time DESC
)
SELECT l.scanner_id, host(l.ip) AS ip, l.port, l.proto, l.time AS observed_at, l.run_id,
       l.service, l.banner, l.tls_sha256
FROM latest l
WHERE NOT EXISTS (
    SELECT 1 FROM coverage_cells cc
    WHERE cc.scanner_id = l.scanner_id AND cc.ips @> l.ip AND cc.ports @> l.port AND l.proto = 'tcp'
      AND cc.run_id <> l.run_id AND cc.finished_at > l.time AND cc.finished_at <= %(at)s
      AND NOT EXISTS (SELECT 1 FROM observations o WHERE o.ip = l.ip AND o.port = l.port
                      AND o.scanner_id = l.scanner_id AND o.run_id = cc.run_id AND o.time <= %(at)s)
)
ORDER BY l.ip, l.port, l.scanner_id LIMIT %(limit)s
"""

HOST_PORTS = """
SELECT o.scanner_id, o.port, o.proto, min(o.time) AS first_seen, max(o.time) AS last_seen,
       count(*) AS observations,
       (SELECT CASE WHEN s.open THEN 'open' ELSE 'closed' END FROM port_state s
        WHERE s.scanner_id = o.scanner_id AND s.ip = o.ip AND s.port = o.port AND s.proto = o.proto) AS state,
       (array_agg(o.service ORDER BY o.time DESC))[1] AS service
FROM observations o WHERE o.ip = %(ip)s::inet
GROUP BY o.scanner_id, o.ip, o.port, o.proto
UNION ALL
-- Ports whose observations are past retention are still known from the kept state.
SELECT s.scanner_id, s.port, s.proto, NULL, NULL, 0, CASE WHEN s.open THEN 'open' ELSE 'closed' END, s.service
FROM port_state s WHERE s.ip = %(ip)s::inet AND NOT EXISTS (
    SELECT 1 FROM observations o WHERE o.ip = s.ip AND o.port = s.port AND o.scanner_id = s.scanner_id)
ORDER BY 2, 1
"""


HOST_OBSERVATIONS = f"""
SELECT {OBSERVATION_COLUMNS} FROM observations WHERE ip = %(ip)s::inet ORDER BY time DESC, port LIMIT %(limit)s
"""


def _filter_params(f: ChangeFilter) -> dict[str, Any]:
    return {"runs": f.run_ids, "scanner": f.scanner_id, "subnet": f.subnet, "port": f.port, "change": f.change,
            "since": f.since, "until": f.until}


async def list_observations(conn: AsyncConnection, params: dict[str, Any], limit: int) -> list[ObservationRead]:
    async with conn.cursor(row_factory=class_row(ObservationRead)) as cur:
        await cur.execute(OBSERVATIONS + " LIMIT %(limit)s", {**params, "limit": limit})
        return await cur.fetchall()


async def list_changes(conn: AsyncConnection, f: ChangeFilter, limit: int,
                       before_id: int | None = None) -> list[PortChangeRead]:
    async with conn.cursor(row_factory=class_row(PortChangeRead)) as cur:
        # Two jsonb values per change: decoding them with json.loads costs more than the query (10k changes).
        set_json_loads(msgspec.json.decode, cur)
        await cur.execute(CHANGES + " LIMIT %(limit)s", {**_filter_params(f), "before_id": before_id, "limit": limit})
        return await cur.fetchall()


async def list_summaries(conn: AsyncConnection, run_id: int | None, before_run: int | None,
                         limit: int) -> list[RunSummaryRead]:
    async with conn.cursor(row_factory=class_row(RunSummaryRead)) as cur:
        await cur.execute(SUMMARIES, {"run": run_id, "before_run": before_run, "limit": limit})
        return await cur.fetchall()


async def cross_vantage(conn: AsyncConnection, run_id: int, include_uncovered: bool, after: tuple[str, int] | None,
                        limit: int) -> list[VantageDifference]:
    async with conn.cursor(row_factory=class_row(VantageDifference)) as cur:
        await cur.execute(CROSS_VANTAGE, {
            "run": run_id, "include_uncovered": include_uncovered, "limit": limit,
            "after_ip": after[0] if after else None, "after_port": after[1] if after else None,
        })
        return await cur.fetchall()


async def point_in_time(conn: AsyncConnection, at: datetime, scanner_id: int | None, subnet: str | None,
                        port: int | None, lookback_days: int, after: tuple[str, int, int] | None,
                        limit: int) -> list[OpenPortRead]:
    async with conn.cursor(row_factory=class_row(OpenPortRead)) as cur:
        await cur.execute(POINT_IN_TIME, {
            "at": at, "scanner": scanner_id, "subnet": subnet, "port": port, "lookback": lookback_days,
            "after_ip": after[0] if after else None, "after_port": after[1] if after else None,
            "after_scanner": after[2] if after else None, "limit": limit,
        })
        return await cur.fetchall()


async def host_ports(conn: AsyncConnection, ip: str) -> list[PortHistory]:
    async with conn.cursor(row_factory=class_row(PortHistory)) as cur:
        await cur.execute(HOST_PORTS, {"ip": ip})
        return await cur.fetchall()


async def host_observations(conn: AsyncConnection, ip: str, limit: int) -> list[ObservationRead]:
    """The address's latest observations, newest first."""
    async with conn.cursor(row_factory=class_row(ObservationRead)) as cur:
        await cur.execute(HOST_OBSERVATIONS, {"ip": ip, "limit": limit})
        return await cur.fetchall()
