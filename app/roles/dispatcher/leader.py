"""Single instance: a session advisory lock on the jobs database; whoever holds it is the leader."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket

import psycopg
from psycopg import AsyncConnection

from app.config import Settings
from app.db.connect import conninfo

# "dispatch" in ASCII: one well-known key per jobs database.
DISPATCHER_LOCK = 0x6469737061746368


def identity() -> str:
    """Who holds the lock, as shown in pg_stat_activity.application_name."""
    return f"mipo-dispatcher {socket.gethostname()} pid={os.getpid()}"


async def connect_lock(settings: Settings) -> AsyncConnection:
    """A dedicated autocommit connection: the lock lives and dies with this session.

    TCP keepalives on both ends: if the leader's host vanishes without closing the socket, the
    server drops the session (and so the lock) in about 20 s, and a standby takes over.
    """
    conn = await AsyncConnection.connect(
        conninfo(settings, "jobs"), autocommit=True, application_name=identity()[:63],
        keepalives=1, keepalives_idle=5, keepalives_interval=3, keepalives_count=3,
    )
    await conn.execute("SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 3; SET tcp_keepalives_count = 3")
    return conn


async def try_lead(conn: AsyncConnection) -> bool:
    cur = await conn.execute("SELECT pg_try_advisory_lock(%s)", (DISPATCHER_LOCK,))
    row = await cur.fetchone()
    return bool(row and row[0])


async def still_leading(conn: AsyncConnection, timeout: float) -> bool:
    """The lock is ours as long as its session answers; a lost session means another may lead now."""
    try:
        cur = await asyncio.wait_for(
            conn.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
                " AND granted AND ((classid::bigint << 32) | objid::bigint) = %s",
                (DISPATCHER_LOCK,),
            ),
            timeout,
        )
        row = await cur.fetchone()
        return bool(row and row[0])
    except (psycopg.Error, TimeoutError, OSError):
        return False


async def release(conn: AsyncConnection | None) -> None:
    if conn is None:
        return
    with contextlib.suppress(psycopg.Error, OSError):
        await conn.execute("SELECT pg_advisory_unlock_all()")
    with contextlib.suppress(psycopg.Error, OSError):
        await conn.close()
