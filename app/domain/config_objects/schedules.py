"""Schedules: cron or preset in an IANA time zone, with jitter; next_run_at recomputed on every change."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from psycopg import AsyncConnection

from app.domain.config_objects import repository as repo
from app.domain.config_objects.common import audit, changes
from app.domain.config_objects.schemas import ScheduleCreate, ScheduleRead, ScheduleUpdate
from app.domain.schedules.cron import CronError, next_fire, parse_cron, zone
from app.errors import Invalid, NotFound

_SELECT = ("SELECT id, name, template_id, cron, timezone, jitter_seconds, enabled, next_run_at, last_run_at,"
           " created_at, updated_at FROM schedules")


def _next_due(cron: str, timezone: str) -> datetime:
    try:
        parsed = parse_cron(cron)
    except CronError as exc:
        raise Invalid(str(exc), reason="invalid_cron", field="cron") from None
    try:
        tz = zone(timezone)
    except CronError as exc:
        raise Invalid(str(exc), reason="invalid_timezone", field="timezone") from None
    try:
        return next_fire(parsed, tz, datetime.now(UTC))
    except CronError as exc:
        raise Invalid(str(exc), reason="invalid_cron", field="cron") from None


async def list_schedules(conn: AsyncConnection) -> list[ScheduleRead]:
    return [ScheduleRead(**r) for r in await repo.rows(conn, _SELECT + " ORDER BY name")]


async def get_schedule(conn: AsyncConnection, schedule_id: int) -> ScheduleRead:
    row = await repo.one(conn, _SELECT + " WHERE id = %s", (schedule_id,))
    if row is None:
        raise NotFound(f"schedule {schedule_id} does not exist")
    return ScheduleRead(**row)


async def _check_template(conn: AsyncConnection, values: dict[str, Any]) -> None:
    if "template_id" in values and await repo.one(
            conn, "SELECT 1 FROM scan_templates WHERE id = %s", (values["template_id"],)) is None:
        raise Invalid(f"scan template {values['template_id']} does not exist", reason="unknown_reference",
                      field="template_id")


async def create_schedule(conn: AsyncConnection, actor: str, data: ScheduleCreate) -> ScheduleRead:
    values = changes(data)
    values["cron"] = data.cron.strip()
    await _check_template(conn, values)
    values["next_run_at"] = _next_due(values["cron"], data.timezone)
    new_id = await repo.insert(conn, "schedules", values, "schedule")
    created = await get_schedule(conn, new_id)
    await audit(conn, actor, "create", "schedule", new_id, None, created)
    return created


async def update_schedule(conn: AsyncConnection, actor: str, schedule_id: int, data: ScheduleUpdate) -> ScheduleRead:
    before = await get_schedule(conn, schedule_id)
    values = changes(data)
    await _check_template(conn, values)
    cron, tz = values.get("cron", before.cron).strip(), values.get("timezone", before.timezone)
    if "cron" in values or "timezone" in values or (data.enabled and not before.enabled):
        # A new rhythm (or re-enabling) starts from now: no "missed" runs for time it was not due.
        values["cron"] = cron
        values["next_run_at"] = _next_due(cron, tz)
    await repo.update(conn, "schedules", schedule_id, values, "schedule", touch=True)
    after = await get_schedule(conn, schedule_id)
    await audit(conn, actor, "update", "schedule", schedule_id, before, after)
    return after


async def delete_schedule(conn: AsyncConnection, actor: str, schedule_id: int) -> None:
    before = await get_schedule(conn, schedule_id)
    await repo.delete(conn, "schedules", schedule_id, "schedule")
    await audit(conn, actor, "delete", "schedule", schedule_id, before, None)
