"""`/api/scanner-groups`: which scanners run a template's jobs, mirror or split."""

from __future__ import annotations

from litestar import delete, get, patch, post
from litestar.params import JSONBody

from app.domain.config_objects import scanner_groups as service
from app.domain.config_objects.schemas import ScannerGroupCreate, ScannerGroupRead, ScannerGroupUpdate
from app.roles.manager.auth import Actor
from app.web.deps import ConfigConn
from app.web.params import Id


@get("/scanner-groups")
async def list_scanner_groups(config_conn: ConfigConn) -> list[ScannerGroupRead]:
    return await service.list_groups(config_conn)


@post("/scanner-groups")
async def create_scanner_group(data: JSONBody[ScannerGroupCreate], config_conn: ConfigConn,
                               actor: Actor) -> ScannerGroupRead:
    return await service.create_group(config_conn, actor, data)


@get("/scanner-groups/{group_id:int}")
async def get_scanner_group(group_id: Id, config_conn: ConfigConn) -> ScannerGroupRead:
    return await service.get_group(config_conn, group_id)


@patch("/scanner-groups/{group_id:int}")
async def update_scanner_group(group_id: Id, data: JSONBody[ScannerGroupUpdate], config_conn: ConfigConn,
                               actor: Actor) -> ScannerGroupRead:
    return await service.update_group(config_conn, actor, group_id, data)


@delete("/scanner-groups/{group_id:int}")
async def delete_scanner_group(group_id: Id, config_conn: ConfigConn, actor: Actor) -> None:
    await service.delete_group(config_conn, actor, group_id)


ROUTES = [list_scanner_groups, create_scanner_group, get_scanner_group, update_scanner_group, delete_scanner_group]
