"""`/api/health/services`: every service the manager can see, with its state."""

from __future__ import annotations

from litestar import get
from litestar.di import NamedDependency

from app.db.connect import Pools
from app.domain.health.service import HealthReport, report
from app.web.deps import AppSettings, ConfigConn


@get("/health/services")
async def services_health(settings: AppSettings, pools: NamedDependency[Pools],
                          config_conn: ConfigConn) -> HealthReport:
    return await report(settings, pools, config_conn)


ROUTES = [services_health]
