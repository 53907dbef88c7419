"""Generated list/create/edit/delete pages for configuration objects whose services share one shape.

A `Resource` names the service functions (list, get, create(actor), update(actor), delete(actor)), the
Create/Update structs, the form fields and the table columns; `routes()` turns it into five handlers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec
from litestar import Request, Response, get, post
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath
from litestar.response import Template
from psycopg import AsyncConnection

from app.config import Settings
from app.errors import DomainError
from app.roles.manager.auth import Actor
from app.roles.manager.gui.render import (
    FORM_ERROR,
    FormInvalid,
    Pager,
    domain_errors,
    page,
    redirect,
    validation_errors,
)
from app.web.deps import ConfigConn

Choices = Callable[[AsyncConnection], Awaitable[list[tuple[int | str, str]]]]
Kind = Literal["text", "number", "textarea", "checkbox", "select", "multi"]


@dataclass(frozen=True)
class Field:
    name: str
    label: str
    kind: Kind = "text"
    help: str = ""
    choices: str = ""        # key into Resource.choices for select/multi
    optional_choice: str = ""  # label of an empty option ("" = a value is required)


@dataclass(frozen=True)
class Column:
    label: str
    attr: str
    ref: str = ""  # show the names of these ids, from Resource.choices[ref]


@dataclass(frozen=True)
class Resource:
    slug: str
    title: str
    singular: str
    list_fn: Callable[[AsyncConnection], Awaitable[Sequence[Any]]]
    get_fn: Callable[[AsyncConnection, int], Awaitable[Any]]
    create_fn: Callable[[AsyncConnection, str, Any], Awaitable[Any]]
    update_fn: Callable[[AsyncConnection, str, int, Any], Awaitable[Any]]
    delete_fn: Callable[[AsyncConnection, str, int], Awaitable[None]]
    create_type: type
    update_type: type
    fields: tuple[Field, ...]
    columns: tuple[Column, ...]
    choices: dict[str, Choices] = field(default_factory=dict)
    write_role: str = "operator"
    intro: str = ""
    run_now_attr: str = ""  # when set, each row gets a "Run now" button for the template id in this attribute
    # Extra facts shown on the edit page, e.g. what a template would scan now: [(label, value), …]
    facts_fn: Callable[[AsyncConnection, Settings, int], Awaitable[list[tuple[str, str]]]] | None = None

    def label(self, item: Any) -> str:
        return str(getattr(item, "name", None) or getattr(item, "cidr", None) or f"#{item.id}")


def _form_data(kind: type, fields: tuple[Field, ...], form: Any, *, partial: bool) -> dict[str, Any]:
    """Form strings → a dict msgspec converts; empty optional inputs take the default (create) or stay (update)."""
    allowed = {f.name for f in msgspec.structs.fields(kind)}
    data: dict[str, Any] = {}
    for f in fields:
        if f.name not in allowed:
            continue
        if f.kind == "checkbox":
            data[f.name] = "true" in form.getall(f.name, [])
        elif f.kind == "multi":
            data[f.name] = [v for v in form.getall(f.name, []) if isinstance(v, str) and v]
        else:
            raw = form.get(f.name)
            value = raw.strip() if isinstance(raw, str) else ""
            if value == "" and (f.kind in ("number", "select") or not partial):
                if f.kind == "select" and f.optional_choice and partial:
                    data[f.name] = None
                continue
            data[f.name] = value
    return data


def _display(item: Any, column: Column, lookups: dict[str, dict[str, str]]) -> str:
    value = getattr(item, column.attr, None)
    if column.ref:
        names = lookups.get(column.ref, {})
        ids = value if isinstance(value, list) else ([] if value is None else [value])
        return ", ".join(names.get(str(i), f"#{i}") for i in ids) or "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None or value == "":
        return "—"
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return str(value)


def routes(res: Resource) -> list[HTTPRouteHandler]:
    """The five handlers of one resource; writes need `res.write_role`."""
    write = {"min_role": res.write_role}
    base = f"/{res.slug}"

    async def options(conn: AsyncConnection) -> dict[str, list[tuple[str, str]]]:
        return {key: [(str(v), label) for v, label in await fn(conn)] for key, fn in res.choices.items()}

    async def list_page(request: Request, conn: AsyncConnection, *, status: int = 200,
                        errors: dict[str, str] | None = None, values: dict[str, Any] | None = None) -> Template:
        query = request.query_params.get("q", "").strip().lower()
        items = list(await res.list_fn(conn))
        if query:
            items = [i for i in items if query in " ".join(str(v) for v in msgspec.structs.astuple(i)).lower()]
        pager = Pager.of(request).with_total(len(items))
        opts = await options(conn)
        lookups = {k: dict(v) for k, v in opts.items()}
        rows = [(item, [_display(item, c, lookups) for c in res.columns])
                for item in items[pager.offset:pager.offset + pager.per_page]]
        struct_fields = {x.name: x for x in msgspec.structs.fields(res.create_type)}
        create_fields = [f for f in res.fields if f.name in struct_fields]
        if values is None:  # a fresh form shows the struct's defaults
            values = {name: x.default for name, x in struct_fields.items() if x.default is not msgspec.NODEFAULT}
        return page(request, "crud_list.html", res.title, status=status, res=res, rows=rows, pager=pager,
                    q=request.query_params.get("q", ""), fields=create_fields, options=opts,
                    errors=errors or {}, values=values)

    async def edit_page(request: Request, conn: AsyncConnection, item_id: int, *, status: int = 200,
                        errors: dict[str, str] | None = None) -> Template:
        item = await res.get_fn(conn, item_id)
        facts: list[tuple[str, str]] = []
        if res.facts_fn is not None:
            try:
                facts = await res.facts_fn(conn, request.app.state.settings, item_id)
            except DomainError as exc:
                facts = [("Problem", str(exc))]
        names = {x.name for x in msgspec.structs.fields(res.update_type)}
        values = {f.name: getattr(item, f.name, "") for f in res.fields}
        return page(request, "crud_edit.html", f"{res.singular} {res.label(item)}", status=status, res=res,
                    item=item, fields=[f for f in res.fields if f.name in names], options=await options(conn),
                    values=values, errors=errors or {}, facts=facts)

    @get(base, name=f"{res.slug}-list")
    async def list_handler(request: Request, config_conn: ConfigConn) -> Template:
        return await list_page(request, config_conn)

    @post(base, name=f"{res.slug}-create", opt=write)
    async def create_handler(request: Request, config_conn: ConfigConn, actor: Actor) -> Response:
        form = await request.form()
        try:
            data: Any = msgspec.convert(_form_data(res.create_type, res.fields, form, partial=False), res.create_type,
                                   strict=False)
            async with config_conn.transaction():  # a savepoint: a refused change leaves nothing behind
                created = await res.create_fn(config_conn, actor, data)
        except (msgspec.ValidationError, DomainError) as exc:
            errors = validation_errors(exc) if isinstance(exc, msgspec.ValidationError) else domain_errors(exc)
            values = {f.name: (form.getall(f.name, []) if f.kind == "multi" else form.get(f.name, ""))
                      for f in res.fields}
            return await list_page(request, config_conn, status=422, errors=errors, values=values)
        return redirect(base, f"{res.singular} {res.label(created)} created.")

    @get(f"{base}/{{item_id:int}}", name=f"{res.slug}-edit")
    async def edit_handler(request: Request, item_id: FromPath[int], config_conn: ConfigConn) -> Template:
        return await edit_page(request, config_conn, item_id)

    @post(f"{base}/{{item_id:int}}", name=f"{res.slug}-update", opt=write)
    async def update_handler(request: Request, item_id: FromPath[int], config_conn: ConfigConn,
                             actor: Actor) -> Response:
        form = await request.form()
        try:
            data: Any = msgspec.convert(_form_data(res.update_type, res.fields, form, partial=True), res.update_type,
                                   strict=False)
            async with config_conn.transaction():
                updated = await res.update_fn(config_conn, actor, item_id, data)
        except (msgspec.ValidationError, DomainError) as exc:
            errors = validation_errors(exc) if isinstance(exc, msgspec.ValidationError) else domain_errors(exc)
            return await edit_page(request, config_conn, item_id, status=422, errors=errors)
        return redirect(base, f"{res.singular} {res.label(updated)} saved.")

    @post(f"{base}/{{item_id:int}}/delete", name=f"{res.slug}-delete", opt=write)
    async def delete_handler(request: Request, item_id: FromPath[int], config_conn: ConfigConn,
                             actor: Actor) -> Response:
        item = await res.get_fn(config_conn, item_id)
        try:
            async with config_conn.transaction():
                await res.delete_fn(config_conn, actor, item_id)
        except DomainError as exc:
            return await edit_page(request, config_conn, item_id, status=409, errors={FORM_ERROR: str(exc)})
        return redirect(base, f"{res.singular} {res.label(item)} deleted.")

    return [list_handler, create_handler, edit_handler, update_handler, delete_handler]


__all__ = ["Column", "Field", "FormInvalid", "Resource", "routes"]
