"""LISTEN connections that sleep on their socket: woken by a notification, or by a timeout to prove the link."""

from __future__ import annotations

import asyncio
import contextlib

import psycopg


async def readable(fd: int, timeout: float) -> bool:
    """True once the socket has data (a notification, or the server closing it); False after `timeout`.

    psycopg's `notifies()` polls its socket ten times a second; a process that listens all day would pay
    for every one of those wake-ups."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, wake)
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ready, timeout)
    finally:
        loop.remove_reader(fd)
    return ready.done()


async def sync(conn: psycopg.AsyncConnection, timeout: float) -> None:
    """A bare protocol Sync: a round trip that opens no transaction (so it commits nothing), before whose
    answer the server sends every pending notification; they reach the connection's notify handlers before
    this returns. Raises when the link is gone."""
    async def round_trip() -> None:
        async with conn.pipeline() as pipeline:
            await pipeline.sync()

    await asyncio.wait_for(round_trip(), timeout=timeout)
