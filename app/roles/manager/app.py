"""The manager: GUI and admin API for operators. It never answers `/scanner/…`."""

from __future__ import annotations

from litestar import Litestar, Router

from app.config import Settings
from app.roles.manager.api import API_ROUTES
from app.roles.manager.auth import AUTH_DEPENDENCIES, authorize
from app.roles.manager.gui.router import gui_router, static_router, template_config
from app.web.factory import build_role_app


def create_app(settings: Settings) -> Litestar:
    """Every route the manager serves is listed here; each one passes the `authorize` guard."""
    api = Router("/api", route_handlers=API_ROUTES, guards=[authorize], dependencies=AUTH_DEPENDENCIES)
    app = build_role_app(settings, "manager", ("config", "jobs", "results"), [api, gui_router(), static_router()],
                         openapi=True, template_config=template_config())
    app.state.settings = settings
    return app
