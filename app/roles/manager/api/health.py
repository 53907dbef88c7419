"""`/api/health/services`: every service the manager can see, with its state."""

from __future__ import annotations

from litestar import get
from litestar.di import NamedDependency
from psycopg import AsyncConnection

from app.config import Settings
from app.db.connect import Pools
from app.domain.health.service import HealthReport, report


@get("/health/services")
async def services_health(settings: NamedDependency[Settings], pools: NamedDependency[Pools],
                          config_conn: AsyncConnection) -> HealthReport:
    return await report(settings, pools, config_conn)


ROUTES = [services_health]
