"""Subnets (a CIDR or one address) and subnet groups, protected while templates or groups use them."""

from __future__ import annotations

import ipaddress
from typing import Any

from psycopg import AsyncConnection

from app.domain.config_objects import repository as repo
from app.domain.config_objects.common import audit, changes, normalise_cidr
from app.domain.config_objects.schemas import (
    SubnetCreate,
    SubnetGroupCreate,
    SubnetGroupRead,
    SubnetGroupUpdate,
    SubnetRead,
    SubnetUpdate,
)
from app.errors import Conflict, NotFound

_SUBNET = "SELECT id, name, cidr::text AS cidr, description, created_at FROM subnets"


def _subnet(row: dict[str, Any]) -> SubnetRead:
    return SubnetRead(addresses=ipaddress.ip_network(row["cidr"]).num_addresses, **row)


async def list_subnets(conn: AsyncConnection, *, limit: int = 500, offset: int = 0) -> list[SubnetRead]:
    return [_subnet(r) for r in await repo.rows(conn, _SUBNET + " ORDER BY name LIMIT %s OFFSET %s",
                                                 (limit, offset))]


async def get_subnet(conn: AsyncConnection, subnet_id: int) -> SubnetRead:
    row = await repo.one(conn, _SUBNET + " WHERE id = %s", (subnet_id,))
    if row is None:
        raise NotFound(f"subnet {subnet_id} does not exist")
    return _subnet(row)


async def create_subnet(conn: AsyncConnection, actor: str, data: SubnetCreate) -> SubnetRead:
    new_id = await repo.insert(conn, "subnets", {"name": data.name, "cidr": normalise_cidr(data.cidr),
                                                 "description": data.description}, "subnet")
    created = await get_subnet(conn, new_id)
    await audit(conn, actor, "create", "subnet", new_id, None, created)
    return created


async def update_subnet(conn: AsyncConnection, actor: str, subnet_id: int, data: SubnetUpdate) -> SubnetRead:
    before = await get_subnet(conn, subnet_id)
    values = changes(data)
    if "cidr" in values:
        values["cidr"] = normalise_cidr(values["cidr"])
    await repo.update(conn, "subnets", subnet_id, values, "subnet")
    after = await get_subnet(conn, subnet_id)
    await audit(conn, actor, "update", "subnet", subnet_id, before, after)
    return after


async def delete_subnet(conn: AsyncConnection, actor: str, subnet_id: int) -> None:
    before = await get_subnet(conn, subnet_id)
    users = await repo.names_using(
        conn,
        "SELECT 'template ' || t.name FROM template_targets tt JOIN scan_templates t ON t.id = tt.template_id"
        " WHERE tt.subnet_id = %(id)s UNION ALL SELECT 'subnet group ' || g.name FROM subnet_group_members m"
        " JOIN subnet_groups g ON g.id = m.group_id WHERE m.subnet_id = %(id)s",
        {"id": subnet_id},
    )
    if users:
        raise Conflict(f"subnet {before.name!r} is in use by {', '.join(sorted(users))}", reason="in_use")
    await repo.delete(conn, "subnets", subnet_id, "subnet")
    await audit(conn, actor, "delete", "subnet", subnet_id, before, None)


# --- subnet groups ------------------------------------------------------------------------------------------

async def _group(conn: AsyncConnection, row: dict[str, Any]) -> SubnetGroupRead:
    ids = await repo.member_ids(conn, "subnet_group_members", "group_id", row["id"], "subnet_id")
    return SubnetGroupRead(subnet_ids=ids, **row)


async def list_groups(conn: AsyncConnection) -> list[SubnetGroupRead]:
    return [await _group(conn, r)
            for r in await repo.rows(conn, "SELECT id, name, description FROM subnet_groups ORDER BY name")]


async def get_group(conn: AsyncConnection, group_id: int) -> SubnetGroupRead:
    row = await repo.one(conn, "SELECT id, name, description FROM subnet_groups WHERE id = %s", (group_id,))
    if row is None:
        raise NotFound(f"subnet group {group_id} does not exist")
    return await _group(conn, row)


async def create_group(conn: AsyncConnection, actor: str, data: SubnetGroupCreate) -> SubnetGroupRead:
    new_id = await repo.insert(conn, "subnet_groups", {"name": data.name, "description": data.description},
                               "subnet group")
    await repo.set_members(conn, "subnet_group_members", "group_id", new_id, "subnet_id", data.subnet_ids,
                           "subnet group")
    created = await get_group(conn, new_id)
    await audit(conn, actor, "create", "subnet_group", new_id, None, created)
    return created


async def update_group(conn: AsyncConnection, actor: str, group_id: int, data: SubnetGroupUpdate) -> SubnetGroupRead:
    before = await get_group(conn, group_id)
    await repo.update(conn, "subnet_groups", group_id, changes(data, exclude=("subnet_ids",)), "subnet group")
    if data.subnet_ids is not None:
        await repo.set_members(conn, "subnet_group_members", "group_id", group_id, "subnet_id", data.subnet_ids,
                               "subnet group")
    after = await get_group(conn, group_id)
    await audit(conn, actor, "update", "subnet_group", group_id, before, after)
    return after


async def delete_group(conn: AsyncConnection, actor: str, group_id: int) -> None:
    before = await get_group(conn, group_id)
    users = await repo.names_using(
        conn, "SELECT t.name FROM template_targets tt JOIN scan_templates t ON t.id = tt.template_id"
        " WHERE tt.subnet_group_id = %s", (group_id,))
    if users:
        raise Conflict(f"subnet group {before.name!r} is in use by template(s) {', '.join(sorted(users))}",
                       reason="in_use")
    await repo.delete(conn, "subnet_groups", group_id, "subnet group")
    await audit(conn, actor, "delete", "subnet_group", group_id, before, None)
