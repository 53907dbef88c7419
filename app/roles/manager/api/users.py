"""`/api/users`: user management (admin only)."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import delete, get, patch, post
from litestar.params import JSONBody, Parameter

from app.domain.users import service
from app.domain.users.schemas import UserCreate, UserRead, UserUpdate
from app.roles.manager.auth import Actor
from app.web.deps import ConfigConn

ADMIN = {"min_role": "admin"}
# Free text that reaches SQL as a parameter: no NUL (PostgreSQL text cannot hold it), bounded.
SearchText = Annotated[str | None, Parameter(pattern=r"^[^\x00]*$", max_length=64)]


class UserPage(msgspec.Struct):
    items: list[UserRead]
    total: int
    limit: int
    offset: int


@get("/users", opt=ADMIN)
async def list_users(config_conn: ConfigConn, q: SearchText = None,
                     limit: Annotated[int, Parameter(ge=1, le=500)] = 50,
                     offset: Annotated[int, Parameter(ge=0, le=1_000_000)] = 0) -> UserPage:
    items, total = await service.list_users(config_conn, query=q, limit=limit, offset=offset)
    return UserPage(items, total, limit, offset)


@post("/users", opt=ADMIN)
async def create_user(data: JSONBody[UserCreate], config_conn: ConfigConn, actor: Actor) -> UserRead:
    return await service.create_user(config_conn, actor, data)


@get("/users/{user_id:int}", opt=ADMIN)
async def get_user(user_id: Annotated[int, Parameter(ge=1, le=2**62)], config_conn: ConfigConn) -> UserRead:
    return await service.get_user(config_conn, user_id)


@patch("/users/{user_id:int}", opt=ADMIN)
async def update_user(user_id: Annotated[int, Parameter(ge=1, le=2**62)], data: JSONBody[UserUpdate],
                      config_conn: ConfigConn, actor: Actor) -> UserRead:
    return await service.update_user(config_conn, actor, user_id, data)


@delete("/users/{user_id:int}", opt=ADMIN)
async def delete_user(user_id: Annotated[int, Parameter(ge=1, le=2**62)], config_conn: ConfigConn,
                      actor: Actor) -> None:
    await service.delete_user(config_conn, actor, user_id)


ROUTES = [list_users, create_user, get_user, update_user, delete_user]
