"""Probe databases, the ingest and backup APIs, scanners and the dispatcher for the health page."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Literal

import httpx
import msgspec
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


async def report(settings: Settings, pools: Pools, config_conn: AsyncConnection) -> HealthReport:
    opened = pools.opened()
    pings = await asyncio.gather(*(ping(pool) for pool in opened.values()))
    services = [ServiceHealth(f"database {name}", "ok" if ok else "unavailable")
                for name, ok in zip(opened, pings, strict=True)]
    services.append(ServiceHealth("manager", "ok", "answering this request"))
    ingest_url = f"http://{settings.ingest.host}:{settings.ingest.port}"
    services.extend(await asyncio.gather(_http("ingest", ingest_url), _http("backup API", settings.backup.url)))
    services.append(await _scanners(config_conn, settings.scanner.offline_after))
    cur = await config_conn.execute("SELECT now()")
    row = await cur.fetchone()
    assert row is not None
    return HealthReport(all(s.state == "ok" for s in services), services, row[0])
