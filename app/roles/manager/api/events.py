"""`/api/events`: stalls, recoveries, missed runs, changes — newest first; acknowledge to mark as seen."""

from __future__ import annotations

from typing import Annotated

from litestar import get, post
from litestar.params import Parameter, QueryParameter

from app.domain.audit.service import record
from app.domain.events.service import Event, list_events
from app.errors import NotFound
from app.roles.manager.auth import Actor
from app.web.deps import ConfigConn
from app.web.params import Id, OptId

# `class` is a Python keyword: the query parameter keeps that name, the argument is `event_class`.
EventClass = Annotated[str | None, QueryParameter(name="class", pattern=r"^[a-z_]{1,64}$")]


@get("/events")
async def get_events(config_conn: ConfigConn, event_class: EventClass = None,
                     limit: Annotated[int, Parameter(ge=1, le=1000)] = 100,
                     before_id: OptId = None) -> list[Event]:
    return await list_events(config_conn, event_class=event_class, limit=limit, before_id=before_id)


@post("/events/{event_id:int}/acknowledge", status_code=200)
async def acknowledge_event(event_id: Id, config_conn: ConfigConn, actor: Actor) -> dict[str, int]:
    cur = await config_conn.execute(
        "UPDATE events SET acknowledged_at = coalesce(acknowledged_at, now()) WHERE id = %s RETURNING id",
        (event_id,))
    if await cur.fetchone() is None:
        raise NotFound(f"event {event_id} does not exist")
    await record(config_conn, actor, "acknowledge", "event", event_id)
    return {"id": event_id}


ROUTES = [get_events, acknowledge_event]
