"""`/api/runs`, `/api/jobs` and repairs: run now, progress, and the operator's repair actions.

The manager only reads the jobs database: "run now" and repairs are queued in the config database
(run_requests, repair_requests) and carried out by the dispatcher within one tick.
"""

from __future__ import annotations

from typing import Annotated, Literal

from litestar import get, post
from litestar.params import FromQuery, JSONBody, Parameter

from app.domain.repairs import service as repairs
from app.domain.repairs.schemas import ReassignBody, RepairRead
from app.domain.runs import repository as runs_repo
from app.domain.runs import service
from app.domain.runs.schemas import JobRead, RunRead, RunRequestCreate, RunRequestRead
from app.errors import NotFound
from app.roles.manager.auth import Actor
from app.web.deps import ConfigConn, JobsConn
from app.web.params import Id, OptId

RunStatus = Literal["running", "completed", "partial", "failed", "cancelled"]
JobStatus = Literal["pending", "running", "completed", "failed", "cancelled"]


@get("/runs")
async def list_runs(jobs_conn: JobsConn, status: FromQuery[RunStatus | None] = None,
                    template_id: OptId = None, limit: Annotated[int, Parameter(ge=1, le=500)] = 50,
                    before_id: OptId = None) -> list[RunRead]:
    return await runs_repo.list_runs(jobs_conn, status=status, template_id=template_id, limit=limit,
                                     before_id=before_id)


@post("/runs", status_code=202)
async def run_now(data: JSONBody[RunRequestCreate], config_conn: ConfigConn, actor: Actor) -> RunRequestRead:
    """Queue a run of a template now; poll `/api/run-requests/{id}` for its run id."""
    return await service.request_run(config_conn, actor, data)


@get("/run-requests/{request_id:int}")
async def get_run_request(request_id: Id, config_conn: ConfigConn) -> RunRequestRead:
    cur = await config_conn.execute(
        "SELECT id, template_id, requested_by, requested_at, run_id FROM run_requests WHERE id = %s", (request_id,))
    row = await cur.fetchone()
    if row is None:
        raise NotFound(f"run request {request_id} does not exist")
    return RunRequestRead(*row)


@get("/runs/{run_id:int}")
async def get_run(run_id: Id, jobs_conn: JobsConn) -> RunRead:
    return await service.get_run(jobs_conn, run_id)


@get("/runs/{run_id:int}/jobs")
async def list_run_jobs(run_id: Id, jobs_conn: JobsConn, status: FromQuery[JobStatus | None] = None,
                        limit: Annotated[int, Parameter(ge=1, le=1000)] = 100,
                        after_id: OptId = None) -> list[JobRead]:
    await service.get_run(jobs_conn, run_id)
    return await runs_repo.list_jobs(jobs_conn, run_id, status=status, limit=limit, after_id=after_id)


@get("/jobs/{job_id:int}")
async def get_job(job_id: Id, jobs_conn: JobsConn) -> JobRead:
    return await service.get_job(jobs_conn, job_id)


@post("/jobs/{job_id:int}/redispatch", status_code=202)
async def redispatch_job(job_id: Id, config_conn: ConfigConn, jobs_conn: JobsConn,
                         actor: Actor) -> RepairRead:
    return await repairs.request_repair(config_conn, jobs_conn, actor, "redispatch", job_id=job_id)


@post("/jobs/{job_id:int}/reassign", status_code=202)
async def reassign_job(job_id: Id, config_conn: ConfigConn, jobs_conn: JobsConn, actor: Actor,
                       data: JSONBody[ReassignBody | None] = None) -> RepairRead:
    target = data.scanner_id if data else None
    return await repairs.request_repair(config_conn, jobs_conn, actor, "reassign", job_id=job_id,
                                        scanner_id=target)


@post("/jobs/{job_id:int}/fail", status_code=202)
async def fail_job(job_id: Id, config_conn: ConfigConn, jobs_conn: JobsConn, actor: Actor) -> RepairRead:
    return await repairs.request_repair(config_conn, jobs_conn, actor, "fail", job_id=job_id)


@post("/scanners/{scanner_id:int}/drain", status_code=202)
async def drain_scanner(scanner_id: Id, config_conn: ConfigConn, jobs_conn: JobsConn,
                        actor: Actor) -> RepairRead:
    """Stop giving the scanner work: its split jobs move to peers, its pending mirror jobs are cancelled."""
    return await repairs.request_repair(config_conn, jobs_conn, actor, "drain", scanner_id=scanner_id)


@get("/repairs")
async def list_repairs(config_conn: ConfigConn,
                       limit: Annotated[int, Parameter(ge=1, le=500)] = 50) -> list[RepairRead]:
    return await repairs.list_repairs(config_conn, limit=limit)


@get("/repairs/{repair_id:int}")
async def get_repair(repair_id: Id, config_conn: ConfigConn) -> RepairRead:
    return await repairs.get_repair(config_conn, repair_id)


ROUTES = [list_runs, run_now, get_run_request, get_run, list_run_jobs, get_job, redispatch_job, reassign_job,
          fail_job, drain_scanner, list_repairs, get_repair]
