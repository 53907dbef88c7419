"""The manager: GUI and admin API for operators. It never answers `/scanner/…`."""

from __future__ import annotations

from litestar import Litestar, Router
from litestar.di import Provide

from app.config import Settings
from app.roles.manager.api import API_ROUTES
from app.roles.manager.auth import authorize, provide_actor, provide_session_user
from app.web.factory import build_role_app

AUTH_DEPENDENCIES = {
    "actor": Provide(provide_actor, sync_to_thread=False),
    "session_user": Provide(provide_session_user, sync_to_thread=False),
}


def create_app(settings: Settings) -> Litestar:
    """Every route the manager serves is listed here; each one passes the `authorize` guard."""
    api = Router("/api", route_handlers=API_ROUTES, guards=[authorize], dependencies=AUTH_DEPENDENCIES)
    app = build_role_app(settings, "manager", ("config", "jobs", "results"), [api], openapi=True)
    app.state.settings = settings
    return app
