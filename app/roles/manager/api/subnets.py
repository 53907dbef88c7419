"""`/api/subnets` and `/api/subnet-groups`: the address space templates scan."""

from __future__ import annotations

from typing import Annotated

from litestar import delete, get, patch, post
from litestar.params import JSONBody, Parameter

from app.domain.config_objects import subnets as service
from app.domain.config_objects.schemas import (
    SubnetCreate,
    SubnetGroupCreate,
    SubnetGroupRead,
    SubnetGroupUpdate,
    SubnetRead,
    SubnetUpdate,
)
from app.roles.manager.auth import Actor
from app.web.deps import ConfigConn
from app.web.params import Id


@get("/subnets")
async def list_subnets(config_conn: ConfigConn, limit: Annotated[int, Parameter(ge=1, le=5000)] = 500,
                       offset: Annotated[int, Parameter(ge=0)] = 0) -> list[SubnetRead]:
    return await service.list_subnets(config_conn, limit=limit, offset=offset)


@post("/subnets")
async def create_subnet(data: JSONBody[SubnetCreate], config_conn: ConfigConn, actor: Actor) -> SubnetRead:
    return await service.create_subnet(config_conn, actor, data)


@get("/subnets/{subnet_id:int}")
async def get_subnet(subnet_id: Id, config_conn: ConfigConn) -> SubnetRead:
    return await service.get_subnet(config_conn, subnet_id)


@patch("/subnets/{subnet_id:int}")
async def update_subnet(subnet_id: Id, data: JSONBody[SubnetUpdate], config_conn: ConfigConn,
                        actor: Actor) -> SubnetRead:
    return await service.update_subnet(config_conn, actor, subnet_id, data)


@delete("/subnets/{subnet_id:int}")
async def delete_subnet(subnet_id: Id, config_conn: ConfigConn, actor: Actor) -> None:
    await service.delete_subnet(config_conn, actor, subnet_id)


@get("/subnet-groups")
async def list_subnet_groups(config_conn: ConfigConn) -> list[SubnetGroupRead]:
    return await service.list_groups(config_conn)


@post("/subnet-groups")
async def create_subnet_group(data: JSONBody[SubnetGroupCreate], config_conn: ConfigConn,
                              actor: Actor) -> SubnetGroupRead:
    return await service.create_group(config_conn, actor, data)


@get("/subnet-groups/{group_id:int}")
async def get_subnet_group(group_id: Id, config_conn: ConfigConn) -> SubnetGroupRead:
    return await service.get_group(config_conn, group_id)


@patch("/subnet-groups/{group_id:int}")
async def update_subnet_group(group_id: Id, data: JSONBody[SubnetGroupUpdate], config_conn: ConfigConn,
                              actor: Actor) -> SubnetGroupRead:
    return await service.update_group(config_conn, actor, group_id, data)


@delete("/subnet-groups/{group_id:int}")
async def delete_subnet_group(group_id: Id, config_conn: ConfigConn, actor: Actor) -> None:
    await service.delete_group(config_conn, actor, group_id)


ROUTES = [list_subnets, create_subnet, get_subnet, update_subnet, delete_subnet, list_subnet_groups,
          create_subnet_group, get_subnet_group, update_subnet_group, delete_subnet_group]
