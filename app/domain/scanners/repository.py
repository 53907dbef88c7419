"""SQL for scanners, scanner_keys and enrolment_tokens (config database)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import class_row, dict_row

from app.domain.scanners.schemas import ScannerRead, TokenRead

_SCANNER = (
    "id, name, description, status,"
    " coalesce(last_heartbeat_at > now() - make_interval(secs => %(offline)s), false) AS online,"
    " host_id, version, last_heartbeat_at, host(last_address) AS last_address, load, running_jobs,"
    " rate_limit, concurrency, bound_network::text AS bound_network, created_at"
)
_ENROLMENT_COLS = ("id, scanner_id, bind_network::text AS bind_network, created_by, created_at, expires_at,"
                   " used_at, host(used_from) AS used_from, revoked_at")


async def list_scanners(conn: AsyncConnection, offline_after: float) -> list[ScannerRead]:
    async with conn.cursor(row_factory=class_row(ScannerRead)) as cur:
        await cur.execute(f"SELECT {_SCANNER} FROM scanners ORDER BY name", {"offline": offline_after})
        return await cur.fetchall()


async def get_scanner(conn: AsyncConnection, scanner_id: int, offline_after: float) -> ScannerRead | None:
    async with conn.cursor(row_factory=class_row(ScannerRead)) as cur:
        await cur.execute(f"SELECT {_SCANNER} FROM scanners WHERE id = %(id)s",
                          {"offline": offline_after, "id": scanner_id})
        return await cur.fetchone()


async def insert_scanner(conn: AsyncConnection, name: str, description: str, rate_limit: int,
                         concurrency: int) -> int | None:
    cur = await conn.execute(
        "INSERT INTO scanners (name, description, rate_limit, concurrency) VALUES (%s, %s, %s, %s)"
        " ON CONFLICT (name) DO NOTHING RETURNING id", (name, description, rate_limit, concurrency))
    row = await cur.fetchone()
    return int(row[0]) if row else None


async def update_scanner(conn: AsyncConnection, scanner_id: int, fields: dict[str, Any]) -> None:
    # Column names come from a fixed whitelist in the service, values are bound.
    sets = ", ".join(f"{col} = %({col})s" for col in fields)
    await conn.execute(f"UPDATE scanners SET {sets}, updated_at = now() WHERE id = %(id)s",
                       {**fields, "id": scanner_id})


async def insert_token(conn: AsyncConnection, scanner_id: int, token_hash: bytes, bind_network: str | None,
                       created_by: str, ttl: float) -> tuple[int, datetime]:
    cur = await conn.execute(
        "INSERT INTO enrolment_tokens (token_hash, scanner_id, bind_network, created_by, expires_at)"
        " VALUES (%s, %s, %s, %s, now() + make_interval(secs => %s)) RETURNING id, expires_at",
        (token_hash, scanner_id, bind_network, created_by, ttl))
    row = await cur.fetchone()
    assert row is not None
    return int(row[0]), row[1]


async def list_tokens(conn: AsyncConnection, scanner_id: int) -> list[TokenRead]:
    async with conn.cursor(row_factory=class_row(TokenRead)) as cur:
        await cur.execute(f"SELECT {_ENROLMENT_COLS} FROM enrolment_tokens WHERE scanner_id = %s ORDER BY id",
                          (scanner_id,))
        return await cur.fetchall()


async def revoke_token(conn: AsyncConnection, scanner_id: int, token_id: int) -> TokenRead | None:
    async with conn.cursor(row_factory=class_row(TokenRead)) as cur:
        await cur.execute(
            f"UPDATE enrolment_tokens SET revoked_at = coalesce(revoked_at, now())"
            f" WHERE id = %s AND scanner_id = %s RETURNING {_ENROLMENT_COLS}", (token_id, scanner_id))
        return await cur.fetchone()


async def consume_token(conn: AsyncConnection, token_hash: bytes, address: str) -> dict[str, Any] | None:
    """The single-use step: one atomic UPDATE, so of N concurrent enrolments exactly one gets a row."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "UPDATE enrolment_tokens SET used_at = now(), used_from = %(addr)s"
            " WHERE token_hash = %(h)s AND used_at IS NULL AND revoked_at IS NULL AND expires_at > now()"
            "   AND (bind_network IS NULL OR %(addr)s::inet <<= bind_network)"
            " RETURNING id, scanner_id, bind_network::text AS bind_network",
            {"h": token_hash, "addr": address})
        return await cur.fetchone()


async def token_state(conn: AsyncConnection, token_hash: bytes, address: str) -> dict[str, Any] | None:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT used_at IS NOT NULL AS used, revoked_at IS NOT NULL AS revoked, expires_at <= now() AS expired,"
            " NOT (bind_network IS NULL OR %(addr)s::inet <<= bind_network) AS wrong_address"
            " FROM enrolment_tokens WHERE token_hash = %(h)s", {"h": token_hash, "addr": address})
        return await cur.fetchone()


async def scanner_by_host(conn: AsyncConnection, host_id: str) -> dict[str, Any] | None:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute("SELECT id, name, status FROM scanners WHERE host_id = %s FOR UPDATE", (host_id,))
        return await cur.fetchone()


async def scanner_for_update(conn: AsyncConnection, scanner_id: int) -> dict[str, Any] | None:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute("SELECT id, name, status, host_id FROM scanners WHERE id = %s FOR UPDATE", (scanner_id,))
        return await cur.fetchone()


async def bind_host(conn: AsyncConnection, scanner_id: int, host_id: str, bound_network: str | None,
                    version: str) -> None:
    await conn.execute(
        "UPDATE scanners SET host_id = %s, bound_network = %s, version = nullif(%s, ''),"
        " status = CASE WHEN status = 'pending' THEN 'active' ELSE status END, updated_at = now() WHERE id = %s",
        (host_id, bound_network, version, scanner_id))


async def retire_placeholder(conn: AsyncConnection, scanner_id: int, merged_into: str) -> None:
    await conn.execute(
        "UPDATE scanners SET status = 'disabled', description = %s, updated_at = now()"
        " WHERE id = %s AND host_id IS NULL",
        (f"enrolment merged into existing scanner {merged_into} (same host)", scanner_id))


async def revoke_keys(conn: AsyncConnection, scanner_id: int) -> int:
    cur = await conn.execute(
        "UPDATE scanner_keys SET revoked_at = now() WHERE scanner_id = %s AND revoked_at IS NULL", (scanner_id,))
    return cur.rowcount


async def insert_key(conn: AsyncConnection, scanner_id: int, key_id: str, key_hash: bytes) -> None:
    await conn.execute("INSERT INTO scanner_keys (scanner_id, key_id, key_hash) VALUES (%s, %s, %s)",
                       (scanner_id, key_id, key_hash))


_KEY_RECORD = (
    "SELECT k.key_id, k.key_hash, k.revoked_at IS NOT NULL AS revoked, s.id, s.name, s.status, s.rate_limit,"
    " s.concurrency, s.bound_network::text AS bound_network"
    " FROM scanner_keys k JOIN scanners s ON s.id = k.scanner_id"
)


async def key_record(conn: AsyncConnection, key_id: str) -> tuple[Any, ...] | None:
    """What authenticating one key needs, in one indexed lookup (scanner_keys.key_id is unique)."""
    cur = await conn.execute(_KEY_RECORD + " WHERE k.key_id = %s", (key_id,))
    return await cur.fetchone()


async def version_counts(conn: AsyncConnection) -> dict[str, int]:
    """How many scanners last reported each agent version (scanners that never reported one left out)."""
    cur = await conn.execute("SELECT version, count(*) FROM scanners WHERE version IS NOT NULL GROUP BY version")
    return {str(row[0]): int(row[1]) for row in await cur.fetchall()}


async def active_key_records(conn: AsyncConnection, limit: int) -> list[tuple[Any, ...]]:
    """Every unrevoked key with its scanner (at most `limit`), to fill ingest's key cache in one query."""
    cur = await conn.execute(_KEY_RECORD + " WHERE k.revoked_at IS NULL LIMIT %s", (limit,))
    return await cur.fetchall()


async def flush_heartbeats(conn: AsyncConnection, beats: str) -> None:
    """Many scanners' heartbeats in one statement (one commit for thousands of scanners).

    `beats`: a JSON array of [scanner id, epoch seconds, version, load, running jobs, address]."""
    await conn.execute(
        "UPDATE scanners s SET last_heartbeat_at = greatest(s.last_heartbeat_at, v.at),"
        " version = nullif(v.version, ''), load = v.load, running_jobs = v.running, last_address = v.addr,"
        " status = CASE WHEN s.status = 'pending' THEN 'active' ELSE s.status END"
        " FROM (SELECT (b->>0)::bigint AS id, to_timestamp((b->>1)::float8) AS at, b->>2 AS version,"
        "        (b->>3)::real AS load, (b->>4)::int AS running, (b->>5)::inet AS addr"
        "       FROM jsonb_array_elements(%s::jsonb) AS b) AS v"
        " WHERE s.id = v.id",
        (beats,))
