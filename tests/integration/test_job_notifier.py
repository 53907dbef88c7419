"""The jobs LISTEN connection: a NOTIFY wakes exactly the named scanner's waiters, and a connection the server
drops is noticed and replaced (the notifier sleeps on its socket, so only data or its liveness probe wakes it)."""

from __future__ import annotations

import asyncio

import psycopg

from app.domain.jobs.notify import CHANNEL, JobNotifier
from tests.support.postgres import PostgresServer


async def _notify(dsn: str, payload: str) -> None:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))


async def _listener_pids(dsn: str) -> list[int]:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cur = await conn.execute("SELECT pid FROM pg_stat_activity WHERE query = %s", (f"LISTEN {CHANNEL}",))
        return [row[0] for row in await cur.fetchall()]


def test_notify_wakes_the_named_scanner_and_survives_a_dropped_connection(pg: PostgresServer) -> None:
    dsn = pg.dsn()

    async def go() -> None:
        notifier = JobNotifier(dsn)
        task = asyncio.create_task(notifier.run())
        try:
            await asyncio.wait_for(notifier.connected.wait(), 30)
            with notifier.subscription(7) as seven, notifier.subscription(8) as eight:
                await _notify(dsn, "7")
                await asyncio.wait_for(seven.wait(), 10)
                assert not eight.is_set()

                # The server ends the LISTEN backend: the notifier reconnects and wakes everyone once.
                (pid,) = await _listener_pids(dsn)
                async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as admin:
                    await admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
                await asyncio.wait_for(eight.wait(), 30)  # the "*" wake after reconnecting
                assert notifier.connected.is_set()
                seven.clear()
                await _notify(dsn, "7")
                await asyncio.wait_for(seven.wait(), 10)
                assert await _listener_pids(dsn) != [pid]
        finally:
            task.cancel()

    asyncio.run(go())
