"""One LISTEN connection per ingest process: `NOTIFY mipo_jobs, '<scanner_id>'` wakes that scanner's claims."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Iterator

import psycopg

from app.db import listen

log = logging.getLogger("mipo.jobs.notify")
CHANNEL = "mipo_jobs"
# With no notification for this long, a round trip proves the link (a dead peer sends no FIN).
LIVENESS_SECONDS = 30.0


class JobNotifier:
    def __init__(self, conninfo: str) -> None:
        self.conninfo = conninfo
        self._waiters: dict[int, set[asyncio.Event]] = defaultdict(set)
        self.connected = asyncio.Event()

    @contextlib.contextmanager
    def subscription(self, scanner_id: int) -> Iterator[asyncio.Event]:
        """An event set by this scanner's NOTIFY; subscribe *before* checking for jobs so none is missed."""
        event = asyncio.Event()
        self._waiters[scanner_id].add(event)
        try:
            yield event
        finally:
            waiters = self._waiters.get(scanner_id)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiters[scanner_id]

    def _wake(self, payload: str) -> None:
        targets = list(self._waiters) if payload in ("", "*") else [int(payload)] if payload.isdigit() else []
        for sid in targets:
            for event in self._waiters.get(sid, ()):
                event.set()

    async def run(self) -> None:
        delay = 0.5
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True) as conn:
                    conn.add_notify_handler(lambda note: self._wake(note.payload))
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self.connected.set()
                    delay = 0.5
                    # Anything queued while we were disconnected: let every waiter re-check once.
                    self._wake("*")
                    while True:
                        # Asleep on the socket; whatever woke it (or the silence) is read by a round trip,
                        # which hands the notifications to the handler and raises when the link is gone.
                        await listen.readable(conn.pgconn.socket, LIVENESS_SECONDS)
                        await listen.sync(conn, LIVENESS_SECONDS)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.connected.clear()
                log.warning("LISTEN %s lost (%s); reconnecting", CHANNEL, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
