"""The GUI router: every page, the guard, HTML refusals (login redirect, 403/404 pages), templates and static files."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

import psycopg
from jinja2 import Environment, FileSystemLoader, select_autoescape
from litestar import Request, Response, Router
from litestar.datastructures import ResponseHeader
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Redirect
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig

from app.errors import DomainError, Forbidden, NotFound, Unauthorized
from app.roles.manager.auth import AUTH_DEPENDENCIES, authorize
from app.roles.manager.gui import (
    audit,
    backups,
    config_pages,
    dashboard,
    events,
    results_pages,
    scanners,
    scans,
    services,
    session_pages,
    users,
)
from app.roles.manager.gui.render import page

log = logging.getLogger("mipo.manager.gui")
HERE = Path(__file__).resolve().parent.parent
GUI_ROUTES = [*session_pages.ROUTES, *dashboard.ROUTES, *users.ROUTES, *audit.ROUTES, *events.ROUTES,
              *services.ROUTES, *scanners.ROUTES, *config_pages.ROUTES, *scans.ROUTES, *results_pages.ROUTES,
              *backups.ROUTES]
# Scripts and styles come only from /static: no inline script runs, nothing loads from elsewhere.
SECURITY_HEADERS = [
    ResponseHeader(name="Content-Security-Policy", value=(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")),
    ResponseHeader(name="X-Frame-Options", value="DENY"),
    ResponseHeader(name="X-Content-Type-Options", value="nosniff"),
    ResponseHeader(name="Referrer-Policy", value="same-origin"),
]


def _to_login(request: Request, _: Unauthorized) -> Response:
    if request.headers.get("hx-request"):
        return Response("", status_code=401, headers={"HX-Redirect": "/login"})
    return Redirect("/login?" + urlencode({"next": request.url.path}), status_code=303)


def _forbidden(request: Request, exc: Forbidden) -> Response:
    if exc.reason == "password_change_required":
        return Redirect("/password", status_code=303)
    return page(request, "error.html", "Not allowed", status=403, message=str(exc))


def _not_found(request: Request, exc: NotFound) -> Response:
    return page(request, "error.html", "Not found", status=404, message=str(exc))


def _domain_error(request: Request, exc: DomainError) -> Response:
    return page(request, "error.html", "Refused", status=exc.status_code, message=str(exc))


def _database_down(request: Request, exc: Exception) -> Response:
    log.warning("database error on %s %s: %s", request.method, request.url.path, exc)
    return page(request, "error.html", "Database unavailable", status=503,
                message="A database did not answer. Try again in a moment; the health page shows which one.")


def _internal_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return page(request, "error.html", "Internal error", status=500,
                message="Something went wrong on our side; the error was logged.")


async def _refuse_nul(request: Request) -> Response | None:
    """PostgreSQL text cannot hold NUL: refuse it up front with a message instead of failing in the database."""
    values: list[object] = [request.url.path, *request.query_params.values()]
    if request.method == "POST" and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")):
        values.extend((await request.form()).values())
    if any(isinstance(v, str) and "\x00" in v for v in values):
        return page(request, "error.html", "Refused", status=400,
                    message="The request contained a NUL character, which no field accepts.")
    return None


def gui_router() -> Router:
    return Router(
        "/", route_handlers=GUI_ROUTES, guards=[authorize], include_in_schema=False, before_request=_refuse_nul,
        response_headers=SECURITY_HEADERS,
        dependencies=AUTH_DEPENDENCIES,
        exception_handlers={Unauthorized: _to_login, Forbidden: _forbidden, NotFound: _not_found,
                            DomainError: _domain_error, psycopg.Error: _database_down,
                            TimeoutError: _database_down, Exception: _internal_error},
    )


def static_router() -> Router:
    return create_static_files_router(path="/static", directories=[HERE / "static"], include_in_schema=False,
                                      opt={"public": True}, cache_control=None)


def template_config() -> TemplateConfig:
    environment = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True),
                              trim_blocks=True, lstrip_blocks=True)
    environment.filters["utc"] = _utc
    environment.filters["kv"] = _key_values
    return TemplateConfig(engine=JinjaTemplateEngine.from_environment(environment))


def _key_values(value: object) -> str:
    """A JSON object as `key: value` pairs without the empty ones, for dense before/after cells."""
    if not isinstance(value, dict):
        return "" if value is None else str(value)
    return " · ".join(f"{k}: {v}" for k, v in value.items() if v not in (None, "", [], {}))


def _utc(moment: datetime) -> str:
    # Every time on every page in UTC, labelled: operators compare them with logs from several hosts.
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
