"""`/api/subnets` and `/api/subnet-groups`: the address space templates scan."""

from __future__ import annotations

from typing import Annotated

from litestar import delete, get, patch, post
from litestar.params import Parameter
from psycopg import AsyncConnection

from app.domain.config_objects import subnets as service
from app.domain.config_objects.schemas import (
    SubnetCreate,
    SubnetGroupCreate,
    SubnetGroupRead,
    SubnetGroupUpdate,
    SubnetRead,
    SubnetUpdate,
)

Id = Annotated[int, Parameter(ge=1, le=2**62)]


@get("/subnets")
async def list_subnets(config_conn: AsyncConnection, limit: Annotated[int, Parameter(ge=1, le=5000)] = 500,
                       offset: Annotated[int, Parameter(ge=0)] = 0) -> list[SubnetRead]:
    return await service.list_subnets(config_conn, limit=limit, offset=offset)


@post("/subnets")
async def create_subnet(data: SubnetCreate, config_conn: AsyncConnection, actor: str) -> SubnetRead:
    return await service.create_subnet(config_conn, actor, data)


@get("/subnets/{subnet_id:int}")
async def get_subnet(subnet_id: Id, config_conn: AsyncConnection) -> SubnetRead:
    return await service.get_subnet(config_conn, subnet_id)


@patch("/subnets/{subnet_id:int}")
async def update_subnet(subnet_id: Id, data: SubnetUpdate, config_conn: AsyncConnection, actor: str) -> SubnetRead:
    return await service.update_subnet(config_conn, actor, subnet_id, data)


@delete("/subnets/{subnet_id:int}")
async def delete_subnet(subnet_id: Id, config_conn: AsyncConnection, actor: str) -> None:
    await service.delete_subnet(config_conn, actor, subnet_id)


@get("/subnet-groups")
async def list_subnet_groups(config_conn: AsyncConnection) -> list[SubnetGroupRead]:
    return await service.list_groups(config_conn)


@post("/subnet-groups")
async def create_subnet_group(data: SubnetGroupCreate, config_conn: AsyncConnection, actor: str) -> SubnetGroupRead:
    return await service.create_group(config_conn, actor, data)


@get("/subnet-groups/{group_id:int}")
async def get_subnet_group(group_id: Id, config_conn: AsyncConnection) -> SubnetGroupRead:
    return await service.get_group(config_conn, group_id)


@patch("/subnet-groups/{group_id:int}")
async def update_subnet_group(group_id: Id, data: SubnetGroupUpdate, config_conn: AsyncConnection,
                              actor: str) -> SubnetGroupRead:
    return await service.update_group(config_conn, actor, group_id, data)


@delete("/subnet-groups/{group_id:int}")
async def delete_subnet_group(group_id: Id, config_conn: AsyncConnection, actor: str) -> None:
    await service.delete_group(config_conn, actor, group_id)


ROUTES = [list_subnets, create_subnet, get_subnet, update_subnet, delete_subnet, list_subnet_groups,
          create_subnet_group, get_subnet_group, update_subnet_group, delete_subnet_group]
