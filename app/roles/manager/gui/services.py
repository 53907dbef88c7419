"""Health of every service, refreshed live."""

from __future__ import annotations

from litestar import Request, get
from litestar.di import NamedDependency
from litestar.response import Template

from app.db.connect import Pools
from app.domain.health.service import report
from app.roles.manager.gui.render import page
from app.web.deps import AppSettings, ConfigConn


@get("/services")
async def services_page(request: Request, settings: AppSettings, pools: NamedDependency[Pools],
                        config_conn: ConfigConn) -> Template:
    template = "_services.html" if request.headers.get("hx-request") else "services.html"
    return page(request, template, "Health", health=await report(settings, pools, config_conn))


ROUTES = [services_page]
