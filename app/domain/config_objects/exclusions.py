"""Exclusions: global (every template) or per template; always subtracted from targets."""

from __future__ import annotations

from psycopg import AsyncConnection

from app.domain.config_objects import repository as repo
from app.domain.config_objects.common import audit, changes, normalise_cidr
from app.domain.config_objects.schemas import ExclusionCreate, ExclusionRead, ExclusionUpdate
from app.errors import NotFound

_SELECT = "SELECT id, cidr::text AS cidr, reason, template_id, created_at FROM exclusions"


async def list_exclusions(conn: AsyncConnection, *, template_id: int | None = None,
                          global_only: bool = False) -> list[ExclusionRead]:
    rows = await repo.rows(
        conn, _SELECT + " WHERE (%(g)s AND template_id IS NULL) OR (NOT %(g)s AND"
        " (%(t)s::bigint IS NULL OR template_id = %(t)s)) ORDER BY id", {"g": global_only, "t": template_id})
    return [ExclusionRead(**r) for r in rows]


async def get_exclusion(conn: AsyncConnection, exclusion_id: int) -> ExclusionRead:
    row = await repo.one(conn, _SELECT + " WHERE id = %s", (exclusion_id,))
    if row is None:
        raise NotFound(f"exclusion {exclusion_id} does not exist")
    return ExclusionRead(**row)


async def create_exclusion(conn: AsyncConnection, actor: str, data: ExclusionCreate) -> ExclusionRead:
    new_id = await repo.insert(conn, "exclusions", {"cidr": normalise_cidr(data.cidr), "reason": data.reason,
                                                    "template_id": data.template_id}, "exclusion")
    created = await get_exclusion(conn, new_id)
    await audit(conn, actor, "create", "exclusion", new_id, None, created)
    return created


async def update_exclusion(conn: AsyncConnection, actor: str, exclusion_id: int,
                           data: ExclusionUpdate) -> ExclusionRead:
    before = await get_exclusion(conn, exclusion_id)
    values = changes(data)
    if "cidr" in values:
        values["cidr"] = normalise_cidr(values["cidr"])
    await repo.update(conn, "exclusions", exclusion_id, values, "exclusion")
    after = await get_exclusion(conn, exclusion_id)
    await audit(conn, actor, "update", "exclusion", exclusion_id, before, after)
    return after


async def delete_exclusion(conn: AsyncConnection, actor: str, exclusion_id: int) -> None:
    before = await get_exclusion(conn, exclusion_id)
    await repo.delete(conn, "exclusions", exclusion_id, "exclusion")
    await audit(conn, actor, "delete", "exclusion", exclusion_id, before, None)
