"""Port lists: operator-defined specs and the built-in catalog lists (read-only)."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

from app.domain.config_objects import repository as repo
from app.domain.config_objects.common import audit, changes
from app.domain.config_objects.schemas import PortListCreate, PortListRead, PortListUpdate
from app.domain.ports.spec import PortSpecError, format_ports, parse_ports
from app.errors import Conflict, Invalid, NotFound

_SELECT = "SELECT id, name, spec, description, builtin FROM port_lists"


def _validated(spec: str) -> str:
    try:
        parse_ports(spec)
    except PortSpecError as exc:
        raise Invalid(str(exc), reason="invalid_ports", field="spec") from None
    return ",".join(part.strip() for part in spec.split(","))


def _read(row: dict[str, Any]) -> PortListRead:
    try:
        ports = parse_ports(row["spec"])
        count, compact = ports.count(), format_ports(ports)
    except PortSpecError:  # a list written before a catalog change; shown, never planned
        count, compact = 0, ""
    return PortListRead(port_count=count, compact=compact, **row)


async def list_port_lists(conn: AsyncConnection) -> list[PortListRead]:
    return [_read(r) for r in await repo.rows(conn, _SELECT + " ORDER BY builtin DESC, name")]


async def get_port_list(conn: AsyncConnection, list_id: int) -> PortListRead:
    row = await repo.one(conn, _SELECT + " WHERE id = %s", (list_id,))
    if row is None:
        raise NotFound(f"port list {list_id} does not exist")
    return _read(row)


async def create_port_list(conn: AsyncConnection, actor: str, data: PortListCreate) -> PortListRead:
    new_id = await repo.insert(conn, "port_lists", {"name": data.name, "spec": _validated(data.spec),
                                                    "description": data.description}, "port list")
    created = await get_port_list(conn, new_id)
    await audit(conn, actor, "create", "port_list", new_id, None, created)
    return created


async def update_port_list(conn: AsyncConnection, actor: str, list_id: int, data: PortListUpdate) -> PortListRead:
    before = await get_port_list(conn, list_id)
    if before.builtin:
        raise Conflict(f"{before.name!r} is built in; copy it into a new list to change it", reason="builtin")
    values = changes(data)
    if "spec" in values:
        values["spec"] = _validated(values["spec"])
    await repo.update(conn, "port_lists", list_id, values, "port list")
    after = await get_port_list(conn, list_id)
    await audit(conn, actor, "update", "port_list", list_id, before, after)
    return after


async def delete_port_list(conn: AsyncConnection, actor: str, list_id: int) -> None:
    before = await get_port_list(conn, list_id)
    if before.builtin:
        raise Conflict(f"{before.name!r} is built in and cannot be deleted", reason="builtin")
    users = await repo.names_using(conn, "SELECT name FROM scan_templates WHERE port_list_id = %s", (list_id,))
    if users:
        raise Conflict(f"port list {before.name!r} is in use by template(s) {', '.join(sorted(users))}",
                       reason="in_use")
    await repo.delete(conn, "port_lists", list_id, "port list")
    await audit(conn, actor, "delete", "port_list", list_id, before, None)
