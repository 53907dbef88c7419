"""`/api/port-lists`: port specs, including the built-in catalog lists (read-only)."""

from __future__ import annotations

from litestar import delete, get, patch, post
from litestar.params import JSONBody

from app.domain.config_objects import port_lists as service
from app.domain.config_objects.schemas import PortListCreate, PortListRead, PortListUpdate
from app.roles.manager.auth import Actor
from app.web.deps import ConfigConn
from app.web.params import Id


@get("/port-lists")
async def list_port_lists(config_conn: ConfigConn) -> list[PortListRead]:
    return await service.list_port_lists(config_conn)


@post("/port-lists")
async def create_port_list(data: JSONBody[PortListCreate], config_conn: ConfigConn, actor: Actor) -> PortListRead:
    return await service.create_port_list(config_conn, actor, data)


@get("/port-lists/{list_id:int}")
async def get_port_list(list_id: Id, config_conn: ConfigConn) -> PortListRead:
    return await service.get_port_list(config_conn, list_id)


@patch("/port-lists/{list_id:int}")
async def update_port_list(list_id: Id, data: JSONBody[PortListUpdate], config_conn: ConfigConn,
                           actor: Actor) -> PortListRead:
    return await service.update_port_list(config_conn, actor, list_id, data)


@delete("/port-lists/{list_id:int}")
async def delete_port_list(list_id: Id, config_conn: ConfigConn, actor: Actor) -> None:
    await service.delete_port_list(config_conn, actor, list_id)


ROUTES = [list_port_lists, create_port_list, get_port_list, update_port_list, delete_port_list]
