"""Runs: ask for one now (manager), answer requests and finalise finished runs (dispatcher)."""

from __future__ import annotations

from psycopg import AsyncConnection

from app.config import Settings
from app.domain.audit.service import record
from app.domain.events.service import emit
from app.domain.planning import repository as planning_repo
from app.domain.planning.service import PlannedRun, create_run
from app.domain.results.change_queue import detect_owed, owe
from app.domain.runs import repository as repo
from app.domain.runs.schemas import JobRead, RunRead, RunRequestCreate, RunRequestRead
from app.errors import NotFound


async def request_run(config: AsyncConnection, actor: str, data: RunRequestCreate) -> RunRequestRead:
    cur = await config.execute("SELECT 1 FROM scan_templates WHERE id = %s", (data.template_id,))
    if await cur.fetchone() is None:
        raise NotFound(f"scan template {data.template_id} does not exist", field="template_id")
    request = await repo.insert_run_request(config, data.template_id, actor)
    await record(config, actor, "run.request", "scan_template", data.template_id, None,
                 {"run_request_id": request.id})
    return request


async def get_run(jobs: AsyncConnection, run_id: int) -> RunRead:
    run = await repo.get_run(jobs, run_id)
    if run is None:
        raise NotFound(f"run {run_id} does not exist")
    run.jobs = await repo.job_counts(jobs, run_id)
    return run


async def get_job(jobs: AsyncConnection, job_id: int) -> JobRead:
    job = await repo.get_job(jobs, job_id)
    if job is None:
        raise NotFound(f"job {job_id} does not exist")
    return job


async def answer_run_requests(config: AsyncConnection, jobs: AsyncConnection, settings: Settings) -> list[PlannedRun]:
    """Each request becomes exactly one run (scan_runs.run_request_id is UNIQUE), even across a crash."""
    planned: list[PlannedRun] = []
    for req in await repo.open_run_requests(config):
        async with config.transaction():
            async with jobs.transaction():
                run = await create_run(config, jobs, settings, req["template_id"], run_request_id=req["id"],
                                       requested_by=req["requested_by"])
                run_id = run.run_id or await planning_repo.run_for_request(jobs, req["id"])
            if run_id is not None:
                await repo.answer_run_request(config, req["id"], run_id)
            planned.append(run)
    return planned


async def finalise_runs(config: AsyncConnection, jobs: AsyncConnection, results: AsyncConnection | None) -> list[int]:
    """Close runs whose jobs are all terminal, then compute their port changes (and emit change events).

    Detection is owed from the transaction that finishes a run and done by `detect_owed`, this pass or a later
    one: a failure, a restart or an unreachable results database delays it, never loses it."""
    async with config.transaction(), jobs.transaction():
        finished = await repo.finish_runs(jobs)
        for run in finished:
            await emit(config, "run_finished",
                       f"run {run['id']} of {run['template_name']!r} {run['status']}:"
                       f" {run['ok']} of {run['total']} jobs completed",
                       severity="info" if run["status"] == "completed" else "warning", run_id=run["id"],
                       details={"status": run["status"], "jobs": run["total"], "completed": run["ok"]})
        await owe(jobs, [run["id"] for run in finished if run["ok"] > 0])
    if results is not None:
        await detect_owed(config, jobs, results)
    return [run["id"] for run in finished]
