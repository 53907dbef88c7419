"""Users pages (admin): list with filter and paging, create, edit role/state/password, delete."""

from __future__ import annotations

from typing import Annotated

from litestar import Request, Response, get, post
from litestar.params import Parameter
from litestar.response import Template
from psycopg import AsyncConnection

from app.domain.users import service
from app.domain.users.schemas import UserCreate, UserUpdate
from app.errors import DomainError
from app.roles.manager.auth import Actor
from app.roles.manager.gui.render import FormInvalid, Pager, domain_errors, form_values, page, parse_form, redirect
from app.web.deps import ConfigConn

ADMIN = {"min_role": "admin"}
UserId = Annotated[int, Parameter(ge=1, le=2**62)]


async def _list_page(request: Request, conn: AsyncConnection, *, status: int = 200,
                     errors: dict[str, str] | None = None, values: dict[str, str] | None = None) -> Template:
    pager = Pager.of(request)
    query = request.query_params.get("q", "")
    items, total = await service.list_users(conn, query=query, limit=pager.per_page, offset=pager.offset)
    return page(request, "users.html", "Users", status=status, users=items, pager=pager.with_total(total),
                q=query, errors=errors or {}, values=values or {"role": "viewer"})


@get("/users", opt=ADMIN)
async def users_page(request: Request, config_conn: ConfigConn) -> Template:
    return await _list_page(request, config_conn)


@post("/users", opt=ADMIN)
async def create_user(request: Request, config_conn: ConfigConn, actor: Actor) -> Response:
    values = await form_values(request)
    try:
        data = parse_form(UserCreate, values, checkboxes=("must_change_password",))
        async with config_conn.transaction():  # a savepoint: a refused change leaves nothing behind
            user = await service.create_user(config_conn, actor, data)
    except FormInvalid as exc:
        return await _list_page(request, config_conn, status=422, errors=exc.errors, values=values)
    except DomainError as exc:
        return await _list_page(request, config_conn, status=422, errors=domain_errors(exc), values=values)
    return redirect("/users", f"User {user.username} created.")


@get("/users/{user_id:int}", opt=ADMIN)
async def edit_user_page(request: Request, user_id: UserId, config_conn: ConfigConn) -> Template:
    user = await service.get_user(config_conn, user_id)
    return page(request, "user_edit.html", f"User {user.username}", target=user)


@post("/users/{user_id:int}", opt=ADMIN)
async def update_user(request: Request, user_id: UserId, config_conn: ConfigConn,
                      actor: Actor) -> Response:
    values = await form_values(request)
    try:
        data = parse_form(UserUpdate, values, checkboxes=("disabled",))
        if data.password is None:
            data.must_change_password = None
        async with config_conn.transaction():
            user = await service.update_user(config_conn, actor, user_id, data)
    except (FormInvalid, DomainError) as exc:
        errors = exc.errors if isinstance(exc, FormInvalid) else domain_errors(exc)
        target = await service.get_user(config_conn, user_id)
        return page(request, "user_edit.html", f"User {target.username}", status=422, target=target, errors=errors)
    return redirect("/users", f"User {user.username} updated.")


@post("/users/{user_id:int}/delete", opt=ADMIN)
async def delete_user(request: Request, user_id: UserId, config_conn: ConfigConn,
                      actor: Actor) -> Response:
    target = await service.get_user(config_conn, user_id)
    try:
        async with config_conn.transaction():
            await service.delete_user(config_conn, actor, user_id)
    except DomainError as exc:
        return page(request, "user_edit.html", f"User {target.username}", status=409, target=target,
                    errors=domain_errors(exc))
    return redirect("/users", f"User {target.username} deleted.")


ROUTES = [users_page, create_user, edit_user_page, update_user, delete_user]
