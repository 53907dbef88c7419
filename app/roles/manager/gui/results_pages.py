"""Results explorer, changes and host history: read-only views over the results service."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlencode

from litestar import Request, get
from litestar.response import Template
from psycopg import AsyncConnection

from app.domain.overview.repository import scanner_names
from app.domain.results import service as results
from app.errors import DomainError
from app.roles.manager.gui.params import Filters
from app.roles.manager.gui.render import page

PER_PAGE = 100
CHANGE_KINDS = ("opened", "closed", "service_changed", "certificate_changed")


def _next_link(request: Request, **params: object) -> str:
    keep = {k: v for k, v in request.query_params.items() if k not in params and not k.startswith(("after_", "before"))}
    return request.url.path + "?" + urlencode({**keep, **{k: str(v) for k, v in params.items()}})


@get("/results")
async def results_page(request: Request, results_conn: AsyncConnection, config_conn: AsyncConnection) -> Template:
    f = Filters(request)
    run_id, scanner_id = f.integer("run_id", 1), f.integer("scanner_id", 1)
    port, subnet = f.integer("port", 0, 65535), f.text("subnet", 64)
    since, until = f.moment("since"), f.moment("until")
    after_ip, after_port, after_time = f.text("after_ip", 64), f.integer("after_port", 0, 65535), f.moment("after_time")
    rows, more = [], None
    if not f.errors:
        try:
            after = (after_ip, after_port or 0, after_time or datetime.min.replace(tzinfo=UTC)) if after_ip else None
            params = results.observation_params(run_id, scanner_id, subnet, port, since, until, after)
            rows = await results.list_observations(results_conn, params, PER_PAGE)
        except DomainError as exc:
            f.errors[exc.field or "subnet"] = str(exc)
    if len(rows) == PER_PAGE:
        last = rows[-1]
        more = _next_link(request, after_ip=last.ip, after_port=last.port, after_time=last.time.isoformat())
    return page(request, "results.html", "Results explorer", rows=rows, more=more, values=f.values, errors=f.errors,
                names=await scanner_names(config_conn))


@get("/changes")
async def changes_page(request: Request, results_conn: AsyncConnection, config_conn: AsyncConnection) -> Template:
    f = Filters(request)
    run_id, scanner_id = f.integer("run_id", 1), f.integer("scanner_id", 1)
    port, subnet, change = f.integer("port", 0, 65535), f.text("subnet", 64), f.text("change", 40)
    since, until, before_id = f.moment("since"), f.moment("until"), f.integer("before_id", 1)
    rows = []
    if not f.errors:
        try:
            flt = results.change_filter([run_id] if run_id else None, scanner_id, subnet, port, change, since, until)
            rows = await results.list_changes(results_conn, flt, PER_PAGE, before_id)
        except DomainError as exc:
            f.errors[exc.field or "subnet"] = str(exc)
    more = _next_link(request, before_id=rows[-1].id) if len(rows) == PER_PAGE else None
    return page(request, "changes.html", "Changes", rows=rows, more=more, values=f.values, errors=f.errors,
                kinds=CHANGE_KINDS, names=await scanner_names(config_conn))


@get("/hosts")
async def host_page(request: Request, results_conn: AsyncConnection, config_conn: AsyncConnection) -> Template:
    f = Filters(request)
    ip = f.text("ip", 64)
    history = None
    if ip and not f.errors:
        try:
            history = await results.host_history(results_conn, ip)
        except DomainError as exc:
            f.errors["ip"] = str(exc)
    return page(request, "host.html", f"Host {ip}" if history else "Host history", history=history,
                values=f.values, errors=f.errors, names=await scanner_names(config_conn))


ROUTES = [results_page, changes_page, host_page]
