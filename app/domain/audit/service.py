"""Append audit records to a hash chain and verify the chain end to end."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import msgspec
from psycopg import AsyncConnection
from psycopg.rows import class_row

GENESIS = b"\x00" * 32
# Serialises appends so the chain never forks; transaction-scoped, released at commit.
_AUDIT_LOCK = 0x61756469


class AuditBreak(msgspec.Struct):
    id: int
    problem: str


class AuditVerification(msgspec.Struct):
    rows_checked: int
    ok: bool
    breaks: list[AuditBreak]


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def record_hash(prev: bytes, at: datetime, actor: str, action: str, object_type: str,
                object_id: str | None, before: Any, after: Any) -> bytes:
    # In UTC: the session TimeZone of the verifying connection must not change what is hashed.
    body = _canonical([at.astimezone(UTC).isoformat(), actor, action, object_type, object_id, before, after])
    return hashlib.sha256(prev + body.encode()).digest()


async def record(conn: AsyncConnection, actor: str, action: str, object_type: str,
                 object_id: object = None, before: Any = None, after: Any = None) -> None:
    """Append one record in the caller's transaction (the change and its audit commit together)."""
    await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_AUDIT_LOCK,))
    cur = await conn.execute("SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1")
    row = await cur.fetchone()
    prev = bytes(row[0]) if row else GENESIS
    cur = await conn.execute("SELECT date_trunc('milliseconds', clock_timestamp())")
    at_row = await cur.fetchone()
    assert at_row is not None
    at: datetime = at_row[0]
    # Round-trip through JSON so what is hashed is exactly what jsonb will give back.
    before_j = json.loads(_canonical(before)) if before is not None else None
    after_j = json.loads(_canonical(after)) if after is not None else None
    oid = None if object_id is None else str(object_id)
    digest = record_hash(prev, at, actor, action, object_type, oid, before_j, after_j)
    await conn.execute(
        "INSERT INTO audit_log (at, actor, action, object_type, object_id, before, after, prev_hash, hash)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (at, actor, action, object_type, oid,
         None if before_j is None else json.dumps(before_j),
         None if after_j is None else json.dumps(after_j), prev, digest),
    )


async def verify(conn: AsyncConnection) -> AuditVerification:
    """Walk the chain in id order; report every row whose link or content does not match."""
    breaks: list[AuditBreak] = []
    prev = GENESIS
    checked = 0
    async with conn.cursor(name="audit_verify") as cur:
        await cur.execute(
            "SELECT id, at, actor, action, object_type, object_id, before, after, prev_hash, hash"
            " FROM audit_log ORDER BY id"
        )
        async for (rid, at, actor, action, otype, oid, before, after, prev_hash, digest) in cur:
            checked += 1
            if bytes(prev_hash) != prev:
                breaks.append(AuditBreak(rid, "link to the previous record does not match"))
            if record_hash(bytes(prev_hash), at, actor, action, otype, oid, before, after) != bytes(digest):
                breaks.append(AuditBreak(rid, "record content does not match its hash"))
            prev = bytes(digest)
    return AuditVerification(rows_checked=checked, ok=not breaks, breaks=breaks)


class AuditRecord(msgspec.Struct):
    id: int
    at: datetime
    actor: str
    action: str
    object_type: str
    object_id: str | None
    before: Any
    after: Any


async def list_records(conn: AsyncConnection, *, actor: str | None = None, object_type: str | None = None,
                       limit: int = 50, before_id: int | None = None) -> list[AuditRecord]:
    """Newest first; `before_id` pages backwards."""
    async with conn.cursor(row_factory=class_row(AuditRecord)) as cur:
        await cur.execute(
            "SELECT id, at, actor, action, object_type, object_id, before, after FROM audit_log"
            " WHERE (%(a)s::text IS NULL OR actor = %(a)s) AND (%(t)s::text IS NULL OR object_type = %(t)s)"
            " AND (%(b)s::bigint IS NULL OR id < %(b)s) ORDER BY id DESC LIMIT %(l)s",
            {"a": actor, "t": object_type, "b": before_id, "l": limit},
        )
        return await cur.fetchall()
