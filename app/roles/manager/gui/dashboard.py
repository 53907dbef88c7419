"""The dashboard: scanners online/offline/outdated, running scans, recent changes and events (live via htmx)."""

from __future__ import annotations

from typing import Any

from litestar import Request, get
from litestar.response import Template
from psycopg import AsyncConnection

from app.config import Settings
from app.domain.events.service import list_events
from app.domain.overview import repository as overview
from app.domain.scanners import service as scanner_service
from app.roles.manager.gui.render import page
from app.web.deps import AppSettings, ConfigConn, JobsConn, ResultsConn


async def _context(settings: Settings, config_conn: AsyncConnection, jobs_conn: AsyncConnection,
                   results_conn: AsyncConnection) -> dict[str, Any]:
    return {
        "scanners": await overview.scanner_counts(config_conn, settings.scanner.offline_after),
        "outdated": await scanner_service.count_outdated(config_conn, settings),
        "offline": await overview.offline_scanners(config_conn, settings.scanner.offline_after),
        "running": await overview.running_scans(jobs_conn),
        "changes": await overview.recent_changes(results_conn),
        "events": await list_events(config_conn, limit=10),
        "names": await overview.scanner_names(config_conn),
    }


@get("/")
async def dashboard(request: Request, settings: AppSettings, config_conn: ConfigConn,
                    jobs_conn: JobsConn, results_conn: ResultsConn) -> Template:


    return page(request, "dashboard.html", "Dashboard",
                **await _context(settings, config_conn, jobs_conn, results_conn))


@get("/dashboard/live")
async def dashboard_live(request: Request, settings: AppSettings, config_conn: ConfigConn,
                         jobs_conn: JobsConn, results_conn: ResultsConn) -> Template:


    return page(request, "_dashboard_live.html", "Dashboard",
                **await _context(settings, config_conn, jobs_conn, results_conn))


ROUTES = [dashboard, dashboard_live]
