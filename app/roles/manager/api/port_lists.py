"""`/api/port-lists`: port specs, including the built-in catalog lists (read-only)."""

from __future__ import annotations

from typing import Annotated

from litestar import delete, get, patch, post
from litestar.params import Parameter
from psycopg import AsyncConnection

from app.domain.config_objects import port_lists as service
from app.domain.config_objects.schemas import PortListCreate, PortListRead, PortListUpdate

Id = Annotated[int, Parameter(ge=1, le=2**62)]


@get("/port-lists")
async def list_port_lists(config_conn: AsyncConnection) -> list[PortListRead]:
    return await service.list_port_lists(config_conn)


@post("/port-lists")
async def create_port_list(data: PortListCreate, config_conn: AsyncConnection, actor: str) -> PortListRead:
    return await service.create_port_list(config_conn, actor, data)


@get("/port-lists/{list_id:int}")
async def get_port_list(list_id: Id, config_conn: AsyncConnection) -> PortListRead:
    return await service.get_port_list(config_conn, list_id)


@patch("/port-lists/{list_id:int}")
async def update_port_list(list_id: Id, data: PortListUpdate, config_conn: AsyncConnection,
                           actor: str) -> PortListRead:
    return await service.update_port_list(config_conn, actor, list_id, data)


@delete("/port-lists/{list_id:int}")
async def delete_port_list(list_id: Id, config_conn: AsyncConnection, actor: str) -> None:
    await service.delete_port_list(config_conn, actor, list_id)


ROUTES = [list_port_lists, create_port_list, get_port_list, update_port_list, delete_port_list]
