"""Probe databases, the ingest and backup APIs, scanners and the dispatcher for the health page."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Literal

import httpx
import msgspec
import psycopg
from psycopg import AsyncConnection

from app.config import Settings
from app.db.connect import Pools, ping

State = Literal["ok", "unavailable", "unknown"]


class ServiceHealth(msgspec.Struct):
    name: str
    state: State
    detail: str = ""


class HealthReport(msgspec.Struct):
    ok: bool
    services: list[ServiceHealth]
    checked_at: datetime


async def _http(name: str, url: str) -> ServiceHealth:
    try:
        async with httpx.AsyncClient(timeout=3, trust_env=False) as client:
            response = await client.get(url.rstrip("/") + "/health")
        if response.status_code == 200:
            return ServiceHealth(name, "ok", url)
        return ServiceHealth(name, "unavailable", f"{url} answered {response.status_code}")
    except httpx.HTTPError as exc:
        return ServiceHealth(name, "unavailable", f"{url}: {type(exc).__name__}")


async def _scanners(conn: AsyncConnection, offline_after: float) -> ServiceHealth:
    cur = await conn.execute(
        "SELECT count(*) FILTER (WHERE status = 'active' AND last_heartbeat_at > now() - make_interval(secs => %s)),"
        " count(*) FILTER (WHERE status = 'active') FROM scanners",
        (offline_after,),
    )
    row = await cur.fetchone()
    online, active = (int(row[0]), int(row[1])) if row else (0, 0)
    state: State = "ok" if online == active else "unavailable"
    return ServiceHealth("scanners", state, f"{online} of {active} active scanners online")


async def _dispatcher(pools: Pools) -> ServiceHealth:
    """The leader holds a session advisory lock on the jobs database; pg_locks shows it to every role."""
    from app.roles.dispatcher.leader import DISPATCHER_LOCK  # the one key both sides must agree on

    try:
        async with pools.get("jobs").connection(timeout=3) as conn:
            cur = await conn.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                " AND classid = %s AND objid = %s AND objsubid = 1",
                (DISPATCHER_LOCK >> 32, DISPATCHER_LOCK & 0xFFFFFFFF),
            )
            row = await cur.fetchone()
    except (psycopg.Error, TimeoutError, RuntimeError):
        return ServiceHealth("dispatcher", "unknown", "the jobs database did not answer")
    if row and row[0]:
        return ServiceHealth("dispatcher", "ok", "a leader holds the dispatcher lock")
    return ServiceHealth("dispatcher", "unavailable", "no dispatcher holds the lock: schedules and runs are not served")


async def _ingest(conn: AsyncConnection, offline_after: float) -> ServiceHealth:
    """Judged by its work, as the manager does not reach ingest nodes (only the edge does): fresh heartbeats
    of active scanners are stored only by a working ingest."""
    cur = await conn.execute(
        "SELECT count(*) FILTER (WHERE last_heartbeat_at > now() - make_interval(secs => %s)), count(*)"
        " FROM scanners WHERE status IN ('active', 'draining')",
        (offline_after,),
    )
    row = await cur.fetchone()
    fresh, active = (int(row[0]), int(row[1])) if row else (0, 0)
    if active == 0:
        return ServiceHealth("ingest", "unknown", "no active scanner sends heartbeats through it yet")
    if fresh:
        return ServiceHealth("ingest", "ok", f"heartbeats of {fresh} scanner(s) stored recently")
    return ServiceHealth("ingest", "unavailable", "no heartbeat stored recently from any active scanner")


async def report(settings: Settings, pools: Pools, config_conn: AsyncConnection) -> HealthReport:
    opened = pools.opened()
    pings = await asyncio.gather(*(ping(pool) for pool in opened.values()))
    services = [ServiceHealth(f"database {name}", "ok" if ok else "unavailable")
                for name, ok in zip(opened, pings, strict=True)]
    services.append(ServiceHealth("manager", "ok", "answering this request"))
    services.append(await _dispatcher(pools))
    services.append(await _ingest(config_conn, settings.scanner.offline_after))
    services.append(await _http("backup API", settings.backup.url))
    services.append(await _scanners(config_conn, settings.scanner.offline_after))
    cur = await config_conn.execute("SELECT now()")
    row = await cur.fetchone()
    assert row is not None
    # "unknown" (nothing to judge by yet) is not a failure.
    return HealthReport(all(s.state != "unavailable" for s in services), services, row[0])
