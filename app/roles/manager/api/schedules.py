"""`/api/schedules`: when templates run (cron or preset, time zone, jitter)."""

from __future__ import annotations

from litestar import delete, get, patch, post
from litestar.params import JSONBody

from app.domain.config_objects import schedules as service
from app.domain.config_objects.schemas import ScheduleCreate, ScheduleRead, ScheduleUpdate
from app.roles.manager.auth import Actor
from app.web.deps import ConfigConn
from app.web.params import Id


@get("/schedules")
async def list_schedules(config_conn: ConfigConn) -> list[ScheduleRead]:
    return await service.list_schedules(config_conn)


@post("/schedules")
async def create_schedule(data: JSONBody[ScheduleCreate], config_conn: ConfigConn, actor: Actor) -> ScheduleRead:
    return await service.create_schedule(config_conn, actor, data)


@get("/schedules/{schedule_id:int}")
async def get_schedule(schedule_id: Id, config_conn: ConfigConn) -> ScheduleRead:
    return await service.get_schedule(config_conn, schedule_id)


@patch("/schedules/{schedule_id:int}")
async def update_schedule(schedule_id: Id, data: JSONBody[ScheduleUpdate], config_conn: ConfigConn,
                          actor: Actor) -> ScheduleRead:
    return await service.update_schedule(config_conn, actor, schedule_id, data)


@delete("/schedules/{schedule_id:int}")
async def delete_schedule(schedule_id: Id, config_conn: ConfigConn, actor: Actor) -> None:
    await service.delete_schedule(config_conn, actor, schedule_id)


ROUTES = [list_schedules, create_schedule, get_schedule, update_schedule, delete_schedule]
