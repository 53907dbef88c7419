"""Scanner groups: mirror (every scanner scans everything) or split (targets shared among online scanners)."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

from app.domain.config_objects import repository as repo
from app.domain.config_objects.common import audit, changes
from app.domain.config_objects.schemas import ScannerGroupCreate, ScannerGroupRead, ScannerGroupUpdate
from app.errors import Conflict, NotFound

_SELECT = "SELECT id, name, mode, description, created_at FROM scanner_groups"


async def _read(conn: AsyncConnection, row: dict[str, Any]) -> ScannerGroupRead:
    ids = await repo.member_ids(conn, "scanner_group_members", "group_id", row["id"], "scanner_id")
    return ScannerGroupRead(scanner_ids=ids, **row)


async def list_groups(conn: AsyncConnection) -> list[ScannerGroupRead]:
    return [await _read(conn, r) for r in await repo.rows(conn, _SELECT + " ORDER BY name")]


async def get_group(conn: AsyncConnection, group_id: int) -> ScannerGroupRead:
    row = await repo.one(conn, _SELECT + " WHERE id = %s", (group_id,))
    if row is None:
        raise NotFound(f"scanner group {group_id} does not exist")
    return await _read(conn, row)


async def create_group(conn: AsyncConnection, actor: str, data: ScannerGroupCreate) -> ScannerGroupRead:
    new_id = await repo.insert(conn, "scanner_groups", changes(data, exclude=("scanner_ids",)), "scanner group")
    await repo.set_members(conn, "scanner_group_members", "group_id", new_id, "scanner_id", data.scanner_ids,
                           "scanner group")
    created = await get_group(conn, new_id)
    await audit(conn, actor, "create", "scanner_group", new_id, None, created)
    return created


async def update_group(conn: AsyncConnection, actor: str, group_id: int,
                       data: ScannerGroupUpdate) -> ScannerGroupRead:
    before = await get_group(conn, group_id)
    # Runs already planned keep their mode (scan_runs.mode); the change applies to the next run.
    await repo.update(conn, "scanner_groups", group_id, changes(data, exclude=("scanner_ids",)), "scanner group")
    if data.scanner_ids is not None:
        await repo.set_members(conn, "scanner_group_members", "group_id", group_id, "scanner_id",
                               data.scanner_ids, "scanner group")
    after = await get_group(conn, group_id)
    await audit(conn, actor, "update", "scanner_group", group_id, before, after)
    return after


async def delete_group(conn: AsyncConnection, actor: str, group_id: int) -> None:
    before = await get_group(conn, group_id)
    users = await repo.names_using(conn, "SELECT name FROM scan_templates WHERE scanner_group_id = %s", (group_id,))
    if users:
        raise Conflict(f"scanner group {before.name!r} is used by template(s) {', '.join(sorted(users))}",
                       reason="in_use")
    await repo.delete(conn, "scanner_groups", group_id, "scanner group")
    await audit(conn, actor, "delete", "scanner_group", group_id, before, None)
