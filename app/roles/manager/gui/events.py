"""Events page: newest first, filter by class, page backwards."""

from __future__ import annotations

from typing import Annotated

from litestar import Request, get
from litestar.params import Parameter
from litestar.response import Template
from psycopg import AsyncConnection

from app.domain.events.service import list_events
from app.roles.manager.gui.render import page

PER_PAGE = 50


@get("/events")
async def events_page(request: Request, config_conn: AsyncConnection, event_class: str | None = None,
                      before_id: Annotated[int | None, Parameter(ge=1, le=2**62)] = None) -> Template:
    rows = await list_events(config_conn, event_class=event_class or None, limit=PER_PAGE, before_id=before_id)
    older = rows[-1].id if len(rows) == PER_PAGE else None
    return page(request, "events.html", "Events", rows=rows, event_class=event_class or "", older=older,
                first_page=before_id is None)


ROUTES = [events_page]
