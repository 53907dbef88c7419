"""Events page: newest first, filter by class, severity and open ones, acknowledge, page backwards."""

from __future__ import annotations

from typing import Annotated

from litestar import Request, Response, get, post
from litestar.params import Parameter
from litestar.response import Template

from app.domain.audit.service import record
from app.domain.overview.repository import acknowledge_event, list_event_rows, scanner_names
from app.errors import NotFound
from app.roles.manager.auth import Actor
from app.roles.manager.gui.params import Filters
from app.roles.manager.gui.render import form_values, page, redirect
from app.web.deps import ConfigConn

PER_PAGE = 50
SEVERITIES = ("info", "warning", "critical")


@get("/events")
async def events_page(request: Request, config_conn: ConfigConn) -> Template:
    f = Filters(request)
    event_class, severity = f.text("event_class", 64), f.text("severity", 16)
    if severity and severity not in SEVERITIES:
        f.errors["severity"] = "unknown severity"
        severity = None
    rows = await list_event_rows(config_conn, event_class=event_class, severity=severity,
                                 open_only=f.values.get("open") == "1", before_id=f.integer("before_id", 1),
                                 limit=PER_PAGE)
    older = rows[-1].id if len(rows) == PER_PAGE else None
    return page(request, "events.html", "Events", rows=rows, older=older, values=f.values, errors=f.errors,
                severities=SEVERITIES, names=await scanner_names(config_conn))


@post("/events/{event_id:int}/acknowledge")
async def acknowledge(request: Request, event_id: Annotated[int, Parameter(ge=1, le=2**62)],
                      config_conn: ConfigConn, actor: Actor) -> Response:
    if not await acknowledge_event(config_conn, event_id):
        raise NotFound(f"event {event_id} does not exist")
    await record(config_conn, actor, "acknowledge", "event", event_id)
    # Back to the filtered list the operator came from; only ever an events page of this site.
    back = (await form_values(request)).get("back", "")
    target = back if back.startswith("/events") and not back.startswith("/events/") else "/events"
    return redirect(target, f"Event #{event_id} acknowledged.")

ROUTES = [events_page, acknowledge]
