"""Results explorer, changes and host history: read-only views over the results service."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated
from urllib.parse import urlencode

from litestar import Request, get
from litestar.params import Parameter
from litestar.response import Template

from app.domain.overview.repository import scanner_names
from app.domain.results import service as results
from app.errors import DomainError
from app.roles.manager.gui.params import Filters
from app.roles.manager.gui.render import page
from app.web.deps import AppSettings, ConfigConn, ResultsConn

PER_PAGE = 100
CHANGE_KINDS = ("opened", "closed", "service_changed", "certificate_changed")


def _next_link(request: Request, **params: object) -> str:
    keep = {k: v for k, v in request.query_params.items() if k not in params and not k.startswith(("after_", "before"))}
    return request.url.path + "?" + urlencode({**keep, **{k: str(v) for k, v in params.items()}})


@get("/results")
async def results_page(request: Request, results_conn: ResultsConn, config_conn: ConfigConn) -> Template:
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


@get("/results/at")
async def point_in_time_page(request: Request, results_conn: ResultsConn, config_conn: ConfigConn,
                             settings: AppSettings) -> Template:
    """What was open at one moment, from each scanner (the latest covered state at or before it)."""
    f = Filters(request)
    at, scanner_id = f.moment("at"), f.integer("scanner_id", 1)
    port, subnet = f.integer("port", 0, 65535), f.text("subnet", 64)
    rows = []
    if at is not None and not f.errors:
        try:
            rows = await results.point_in_time(results_conn, at, scanner_id=scanner_id, subnet=subnet, port=port,
                                               lookback_days=settings.retention.observations_days,
                                               limit=PER_PAGE * 5)
        except DomainError as exc:
            f.errors[exc.field or "subnet"] = str(exc)
    return page(request, "point_in_time.html", "Open at a point in time", rows=rows, values=f.values,
                errors=f.errors, names=await scanner_names(config_conn), asked=at is not None)


@get("/scans/{run_id:int}/vantage")
async def vantage_page(request: Request, run_id: Annotated[int, Parameter(ge=1, le=2**62)],
                       results_conn: ResultsConn, config_conn: ConfigConn) -> Template:
    """Where the scanners of a mirror run disagree: open from some, covered but not open from others."""
    rows = await results.cross_vantage(results_conn, run_id,
                                       include_uncovered=request.query_params.get("uncovered") == "1",
                                       limit=PER_PAGE * 5)
    return page(request, "vantage.html", f"Scan #{run_id}: where the vantage points disagree", rows=rows,
                run_id=run_id, names=await scanner_names(config_conn),
                uncovered=request.query_params.get("uncovered") == "1")


@get("/changes")
async def changes_page(request: Request, results_conn: ResultsConn, config_conn: ConfigConn) -> Template:
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
async def host_page(request: Request, results_conn: ResultsConn, config_conn: ConfigConn) -> Template:
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


ROUTES = [results_page, point_in_time_page, vantage_page, changes_page, host_page]
