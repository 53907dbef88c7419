"""Coalesced heartbeats: kept in memory, written for all scanners in one UPDATE every few seconds."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import msgspec
from psycopg_pool import AsyncConnectionPool

from app.domain.scanners import repository as repo

log = logging.getLogger("mipo.heartbeats")


# (scanner id, time.time() of arrival, version, load, running jobs, address): a plain tuple, as recording one is
# on every heartbeat's path. The flush sends them all as one JSON array of these tuples: one encode in C, where
# six typed arrays cost the flush a Python loop per element to build and dump them.
_Beat = tuple[int, float, str, float, int, str]
_encode = msgspec.json.Encoder().encode


class HeartbeatBuffer:
    """The latest heartbeat per scanner; `flush` writes them all in one transaction."""

    def __init__(self, flush_interval: float = 2.0) -> None:
        self.flush_interval = flush_interval
        self._beats: dict[int, _Beat] = {}
        self.flushes = 0

    def record(self, scanner_id: int, version: str, load: float, running_jobs: int, address: str) -> None:
        self._beats[scanner_id] = (scanner_id, time.time(), version, load, running_jobs, address)

    async def flush(self, pool: AsyncConnectionPool) -> int:
        beats, self._beats = self._beats, {}
        if not beats:
            return 0
        try:
            batch = _encode(list(beats.values())).decode()
            async with pool.connection() as conn, conn.transaction():
                await repo.flush_heartbeats(conn, batch)
        except Exception:
            # Put them back unless a newer beat arrived meanwhile; the next flush retries.
            for sid, beat in beats.items():
                self._beats.setdefault(sid, beat)
            raise
        self.flushes += 1
        return len(beats)

    async def run(self, pool: AsyncConnectionPool) -> None:
        while True:
            await asyncio.sleep(self.flush_interval)
            try:
                await self.flush(pool)
            except Exception as exc:
                log.warning("heartbeat flush failed (kept for the next one): %s", exc)

    async def final_flush(self, pool: AsyncConnectionPool) -> None:
        with contextlib.suppress(Exception):
            await self.flush(pool)
