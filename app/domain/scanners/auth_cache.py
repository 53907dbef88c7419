"""Ingest's copy of the scanner keys: authentication without a query per request, never staler than a bound.

Triggers (config migration 0510) announce every change to a key or to its scanner's status, limits or bound
network on `mipo_scanner_auth`, in the changing transaction. One connection per ingest process LISTENs and
drops the scanner's entries when such a change commits. The copy is trusted only while that connection is
proven current: a probe round trip, made at least every `max_stale / 4` seconds and whenever the socket has
data, delivers every notification committed before it started (the server sends pending notifications before
it answers). With no probe completed within `max_stale` seconds — connection lost, database slow — every request
reads the database again, so a revoked key, a disabled or draining scanner takes effect within `max_stale`
seconds at worst, normally within milliseconds.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from app.db import listen
from app.domain.scanners import keys
from app.domain.scanners import repository as repo
from app.domain.scanners.schemas import AuthenticatedScanner

log = logging.getLogger("mipo.scanners.auth")
CHANNEL = "mipo_scanner_auth"
PRELOAD_LIMIT = 50_000  # keys read at (re)connect; beyond that the copy fills on first use

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# Where a well-formed key carries its 16-hex id (keys.new_key). Only a shortcut to the remembered acceptance:
# the full presented key is compared with its record's digest, whatever this slice holds.
_KEY_ID = slice(len(keys.KEY_PREFIX), len(keys.KEY_PREFIX) + 16)


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """One key and its scanner, as authentication needs them."""

    key_id: str
    key_hash: bytes
    revoked: bool
    scanner_id: int
    name: str
    status: str
    rate_limit: int
    concurrency: int
    bound_network: Network | None

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> KeyRecord:
        key_id, key_hash, revoked, scanner_id, name, status, rate_limit, concurrency, network = row
        return cls(key_id, bytes(key_hash), bool(revoked), int(scanner_id), name, status, int(rate_limit),
                   int(concurrency), ipaddress.ip_network(network) if network else None)


@dataclass(slots=True)  # not frozen: made on a scanner's first call, where a frozen __init__ costs more
class Accepted:
    """What authentication answered for a key from an address, given `record`: valid while `record` is cached."""

    record: KeyRecord
    address: str
    scanner: AuthenticatedScanner


class ScannerAuthCache:
    """Key records by key id, invalidated by the database's notifications; `max_stale = 0` disables it."""

    def __init__(self, conninfo: str, max_stale: float = 2.0) -> None:
        self.conninfo = conninfo
        self.max_stale = max_stale
        self.probe_interval = max_stale / 4
        self._entries: dict[str, KeyRecord] = {}
        self._by_scanner: dict[int, set[str]] = {}
        # The last acceptance per key id. An entry counts only while its record is still the cached one (any
        # invalidation or re-read replaces or drops that record) and the copy is current.
        self._accepted: dict[str, Accepted] = {}
        # Bumped by every invalidation: a lookup that raced one does not store what it read.
        self._generation = 0
        self._confirmed_at = -math.inf  # start time of the last probe that completed on the listening connection
        self.hits = 0
        self.misses = 0

    def current(self) -> bool:
        """True while the copy may be used (a probe confirmed the listener within `max_stale` seconds)."""
        return self.max_stale > 0 and time.monotonic() - self._confirmed_at <= self.max_stale

    def accepted(self, presented: str, address: str) -> AuthenticatedScanner | None:
        """The scanner authentication answered for this key from this address, if nothing it depends on has
        changed since (its record still the cached one, the copy current); else None: authenticate in full.

        The presented key is still compared with the record's SHA-256 digest (constant time) on every call; what
        is skipped is the rest (parsing, the checks of revocation, status and binding, building the answer),
        which depends only on the record and the address. Refusals are never remembered.
        """
        hit = self._accepted.get(presented[_KEY_ID])
        if (hit is None or hit.address != address or self._entries.get(hit.record.key_id) is not hit.record
                or not self.current() or not keys.key_matches(presented, hit.record.key_hash)):
            return None
        self.hits += 1
        return hit.scanner

    def accept(self, hits_before: int, presented: str, scanner: AuthenticatedScanner) -> None:
        """Remember `scanner`, what authenticating `presented` from `scanner.address` just answered, if it answered
        from the copy: `hits` (read right before it started) grew by exactly one, so the lookup found the cached
        record and returned without waiting — nothing can have changed the copy since, and that record is the
        cached one now."""
        if self.hits != hits_before + 1:
            return  # read from the database (or refused before any lookup): not remembered
        key_id = presented[_KEY_ID]
        record = self._entries.get(key_id)
        if record is not None:
            self._accepted[key_id] = Accepted(record, scanner.address, scanner)

    async def lookup(self, pool: AsyncConnectionPool, key_id: str) -> KeyRecord | None:
        """The record of a key id (revoked keys included), from the copy when current, else one indexed query."""
        if self.current():
            cached = self._entries.get(key_id)
            if cached is not None:
                self.hits += 1
                return cached
        self.misses += 1
        generation = self._generation
        async with pool.connection() as conn:
            row = await repo.key_record(conn, key_id)
        if row is None:
            return None  # unknown ids are not remembered: the next request asks again
        record = KeyRecord.from_row(row)
        if generation == self._generation and self.current():
            self._store(record)
        return record

    def _store(self, record: KeyRecord) -> None:
        previous = self._entries.get(record.key_id)
        if previous is not None and previous.scanner_id != record.scanner_id:
            self._by_scanner.get(previous.scanner_id, set()).discard(record.key_id)
        self._entries[record.key_id] = record
        self._by_scanner.setdefault(record.scanner_id, set()).add(record.key_id)
        self._accepted.pop(record.key_id, None)

    def invalidate(self, payload: str) -> None:
        """Forget one scanner's keys (payload = its id), or everything (`*` or anything unexpected)."""
        self._generation += 1
        if payload.isdigit():
            for key_id in self._by_scanner.pop(int(payload), ()):
                self._entries.pop(key_id, None)
                self._accepted.pop(key_id, None)
        else:
            self._entries.clear()
            self._by_scanner.clear()
            self._accepted.clear()

    async def _preload(self, conn: psycopg.AsyncConnection) -> None:
        generation = self._generation
        rows = await repo.active_key_records(conn, PRELOAD_LIMIT)
        if generation != self._generation:
            return  # a change was announced while reading: what was read may be older than it
        for row in rows:
            self._store(KeyRecord.from_row(row))

    async def _probe(self, conn: psycopg.AsyncConnection) -> None:
        started = time.monotonic()
        await listen.sync(conn, self.max_stale)  # pending notifications reach `invalidate` before it returns
        self._confirmed_at = started

    async def run(self) -> None:
        """LISTEN, fill the copy, then probe; reconnect forever (the copy is unused while disconnected)."""
        if self.max_stale <= 0:
            return
        delay = 0.5
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True) as conn:
                    conn.add_notify_handler(lambda note: self.invalidate(note.payload))
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self.invalidate("*")  # whatever changed while nobody listened
                    await self._preload(conn)
                    delay = 0.5
                    while True:
                        await self._probe(conn)
                        await listen.readable(conn.pgconn.socket, self.probe_interval)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._confirmed_at = -math.inf
                log.warning("LISTEN %s lost (%s); keys are read from the database until it is back", CHANNEL, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
