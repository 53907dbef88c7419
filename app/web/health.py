"""`GET /health`: 200 when every database this role uses answers, 503 when one does not."""

from __future__ import annotations

import asyncio

import msgspec
from litestar import Response, get
from litestar.di import NamedDependency

from app.db.connect import Pools, ping


class Health(msgspec.Struct):
    status: str
    role: str
    databases: dict[str, str]


@get("/health", include_in_schema=False, cache_control=None)
async def health(pools: NamedDependency[Pools], role_name: NamedDependency[str]) -> Response[Health]:
    opened = pools.opened()
    results = await asyncio.gather(*(ping(pool) for pool in opened.values()))
    states = {name: ("ok" if ok else "unavailable") for name, ok in zip(opened, results, strict=True)}
    healthy = all(results)
    body = Health(status="ok" if healthy else "unavailable", role=role_name, databases=states)
    return Response(body, status_code=200 if healthy else 503, headers={"Cache-Control": "no-store"})
