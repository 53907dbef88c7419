"""`/api/exclusions`: addresses never scanned, globally or for one template."""

from __future__ import annotations

from litestar import delete, get, patch, post
from litestar.params import FromQuery, JSONBody

from app.domain.config_objects import exclusions as service
from app.domain.config_objects.schemas import ExclusionCreate, ExclusionRead, ExclusionUpdate
from app.roles.manager.auth import Actor
from app.web.deps import ConfigConn
from app.web.params import Id, OptId


@get("/exclusions")
async def list_exclusions(config_conn: ConfigConn, template_id: OptId = None,
                          global_only: FromQuery[bool] = False) -> list[ExclusionRead]:
    return await service.list_exclusions(config_conn, template_id=template_id, global_only=global_only)


@post("/exclusions")
async def create_exclusion(data: JSONBody[ExclusionCreate], config_conn: ConfigConn, actor: Actor) -> ExclusionRead:
    return await service.create_exclusion(config_conn, actor, data)


@get("/exclusions/{exclusion_id:int}")
async def get_exclusion(exclusion_id: Id, config_conn: ConfigConn) -> ExclusionRead:
    return await service.get_exclusion(config_conn, exclusion_id)


@patch("/exclusions/{exclusion_id:int}")
async def update_exclusion(exclusion_id: Id, data: JSONBody[ExclusionUpdate], config_conn: ConfigConn,
                           actor: Actor) -> ExclusionRead:
    return await service.update_exclusion(config_conn, actor, exclusion_id, data)


@delete("/exclusions/{exclusion_id:int}")
async def delete_exclusion(exclusion_id: Id, config_conn: ConfigConn, actor: Actor) -> None:
    await service.delete_exclusion(config_conn, actor, exclusion_id)


ROUTES = [list_exclusions, create_exclusion, get_exclusion, update_exclusion, delete_exclusion]
