"""Scan templates: targets (subnets, subnet groups) x ports x options, run by one scanner group."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

from app.config import Settings
from app.domain.config_objects import repository as repo
from app.domain.config_objects.common import audit, changes
from app.domain.config_objects.schemas import TemplateCreate, TemplatePreview, TemplateRead, TemplateUpdate
from app.domain.planning import repository as planning
from app.domain.ports.spec import PortSpecError, parse_ports
from app.domain.targets.addresses import TargetSet
from app.errors import Conflict, Invalid, NotFound

_SELECT = ("SELECT id, name, description, port_list_id, scanner_group_id, rate, timeout_ms, banner, tls,"
           " created_at, updated_at FROM scan_templates")


async def _read(conn: AsyncConnection, row: dict[str, Any]) -> TemplateRead:
    targets = await repo.rows(conn, "SELECT subnet_id, subnet_group_id FROM template_targets WHERE template_id = %s",
                              (row["id"],))
    return TemplateRead(subnet_ids=sorted(t["subnet_id"] for t in targets if t["subnet_id"]),
                        subnet_group_ids=sorted(t["subnet_group_id"] for t in targets if t["subnet_group_id"]),
                        **row)


async def list_templates(conn: AsyncConnection) -> list[TemplateRead]:
    return [await _read(conn, r) for r in await repo.rows(conn, _SELECT + " ORDER BY name")]


async def get_template(conn: AsyncConnection, template_id: int) -> TemplateRead:
    row = await repo.one(conn, _SELECT + " WHERE id = %s", (template_id,))
    if row is None:
        raise NotFound(f"scan template {template_id} does not exist")
    return await _read(conn, row)


async def _check_refs(conn: AsyncConnection, values: dict[str, Any]) -> None:
    checks = (("port_list_id", "port_lists", "port list"), ("scanner_group_id", "scanner_groups", "scanner group"))
    for field, table, noun in checks:
        if field in values and await repo.one(conn, f"SELECT 1 FROM {table} WHERE id = %s", (values[field],)) is None:
            raise Invalid(f"{noun} {values[field]} does not exist", reason="unknown_reference", field=field)


async def _set_targets(conn: AsyncConnection, template_id: int, subnet_ids: list[int] | None,
                       group_ids: list[int] | None) -> None:
    for ids, column, table, field in ((subnet_ids, "subnet_id", "subnets", "subnet_ids"),
                                      (group_ids, "subnet_group_id", "subnet_groups", "subnet_group_ids")):
        if ids is None:
            continue
        unique = sorted(set(ids))
        found = await repo.rows(conn, f"SELECT id FROM {table} WHERE id = ANY(%s)", (unique,))
        missing = sorted(set(unique) - {r["id"] for r in found})
        if missing:
            raise Invalid(f"{field}: {missing} do not exist", reason="unknown_reference", field=field)
        await conn.execute(f"DELETE FROM template_targets WHERE template_id = %s AND {column} IS NOT NULL",
                           (template_id,))
        async with conn.cursor() as cur:
            await cur.executemany(f"INSERT INTO template_targets (template_id, {column}) VALUES (%s, %s)",
                                  [(template_id, i) for i in unique])


async def create_template(conn: AsyncConnection, actor: str, data: TemplateCreate) -> TemplateRead:
    values = changes(data, exclude=("subnet_ids", "subnet_group_ids"))
    await _check_refs(conn, values)
    new_id = await repo.insert(conn, "scan_templates", values, "scan template")
    await _set_targets(conn, new_id, data.subnet_ids, data.subnet_group_ids)
    created = await get_template(conn, new_id)
    await audit(conn, actor, "create", "scan_template", new_id, None, created)
    return created


async def update_template(conn: AsyncConnection, actor: str, template_id: int, data: TemplateUpdate) -> TemplateRead:
    before = await get_template(conn, template_id)
    values = changes(data, exclude=("subnet_ids", "subnet_group_ids"))
    await _check_refs(conn, values)
    await repo.update(conn, "scan_templates", template_id, values, "scan template", touch=True)
    await _set_targets(conn, template_id, data.subnet_ids, data.subnet_group_ids)
    after = await get_template(conn, template_id)
    await audit(conn, actor, "update", "scan_template", template_id, before, after)
    return after


async def delete_template(conn: AsyncConnection, actor: str, template_id: int) -> None:
    before = await get_template(conn, template_id)
    users = await repo.names_using(conn, "SELECT name FROM schedules WHERE template_id = %s", (template_id,))
    if users:
        raise Conflict(f"template {before.name!r} is used by schedule(s) {', '.join(sorted(users))}",
                       reason="in_use")
    await repo.delete(conn, "scan_templates", template_id, "scan template")
    await audit(conn, actor, "delete", "scan_template", template_id, before, None)


async def preview_template(conn: AsyncConnection, settings: Settings, template_id: int) -> TemplatePreview:
    """Addresses x ports a run would scan now: exclusions and the authorised scope applied, nothing listed."""
    tpl = await planning.template_inputs(conn, template_id)
    if tpl is None:
        raise NotFound(f"scan template {template_id} does not exist")
    targets = TargetSet.parse(await planning.template_cidrs(conn, template_id))
    left = targets.subtract(TargetSet.parse(await planning.exclusion_cidrs(conn, template_id)))
    if settings.scope.authorised:
        left = left.intersect(TargetSet.parse(settings.scope.authorised))
    try:
        ports = parse_ports(tpl["ports"]).count()
    except PortSpecError as exc:
        raise Invalid(str(exc), reason="invalid_ports") from None
    return TemplatePreview(addresses=left.count(), ports=ports, probes=left.count() * ports,
                           ranges=len(left.v4.intervals) + len(left.v6.intervals),
                           excluded_addresses=targets.count() - left.count())
