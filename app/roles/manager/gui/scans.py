"""Scans: run now, the list of runs, and one run with live progress (htmx polling while it runs)."""

from __future__ import annotations

from litestar import Request, Response, get, post
from litestar.params import FromPath
from litestar.response import Redirect, Template

from app.domain.config_objects.templates import list_templates
from app.domain.overview.repository import run_events, run_request, scanner_names
from app.domain.repairs import service as repairs
from app.domain.runs import repository as runs_repo
from app.domain.runs import service as runs
from app.domain.runs.schemas import RunRequestCreate
from app.errors import DomainError, NotFound
from app.roles.manager.auth import Actor
from app.roles.manager.gui.params import Filters
from app.roles.manager.gui.render import form_values, page, redirect
from app.web.deps import ConfigConn, JobsConn
from app.web.params import Id

STATUSES = ("running", "completed", "partial", "failed", "cancelled")
JOB_REPAIRS = ("redispatch", "reassign", "fail")
PER_PAGE = 50


@get("/scans")
async def scans_page(request: Request, jobs_conn: JobsConn, config_conn: ConfigConn) -> Template:
    f = Filters(request)
    status = f.text("status")
    if status and status not in STATUSES:
        f.errors["status"] = "unknown status"
        status = None
    rows = await runs_repo.list_runs(jobs_conn, status=status, template_id=f.integer("template_id", 1),
                                     limit=PER_PAGE, before_id=f.integer("before_id", 1))
    older = rows[-1].id if len(rows) == PER_PAGE else None
    template = "_scans_table.html" if request.headers.get("hx-request") else "scans.html"
    return page(request, template, "Scans", rows=rows, older=older, statuses=STATUSES, values=f.values,
                errors=f.errors, templates=await list_templates(config_conn),
                live=any(r.status == "running" for r in rows))


@post("/scans/run")
async def run_now(request: Request, config_conn: ConfigConn, actor: Actor) -> Response:
    raw = (await form_values(request)).get("template_id", "")
    if not raw.isdigit():
        return redirect("/templates", "Choose a template to run.")
    made = await runs.request_run(config_conn, actor, RunRequestCreate(template_id=int(raw)))
    return Redirect(f"/scans/requests/{made.id}", status_code=303)


@get("/scans/requests/{request_id:int}")
async def run_request_page(request: Request, request_id: Id, config_conn: ConfigConn) -> Template | Response:
    """Waits (polling) until the dispatcher turned the request into a run, then goes to that run."""
    found = await run_request(config_conn, request_id)
    if found is None:
        raise NotFound(f"run request {request_id} does not exist")
    if found.run_id is not None:
        target = f"/scans/{found.run_id}"
        if request.headers.get("hx-request"):
            return Response("", headers={"HX-Redirect": target})
        return Redirect(target, status_code=303)
    return page(request, "run_request.html", "Run requested", found=found)


@get("/scans/{run_id:int}")
async def run_page(request: Request, run_id: Id, jobs_conn: JobsConn, config_conn: ConfigConn) -> Template:
    run = await runs.get_run(jobs_conn, run_id)
    jobs = await runs_repo.list_jobs(jobs_conn, run_id, status=None, limit=500, after_id=None)
    template = "_run_progress.html" if request.headers.get("hx-request") else "run.html"
    return page(request, template, f"Scan #{run.id} — {run.template_name}", run=run, jobs=jobs,
                names=await scanner_names(config_conn), events=await run_events(config_conn, run_id))


@post("/scans/{run_id:int}/jobs/{job_id:int}/{action:str}")
async def repair_job(run_id: Id, job_id: Id, action: FromPath[str], config_conn: ConfigConn, jobs_conn: JobsConn,
                     actor: Actor) -> Response:
    """Operator repairs of one job (redispatch, reassign within the group, fail); the dispatcher carries them out."""
    if action not in JOB_REPAIRS:
        raise NotFound(f"no job action {action!r}")
    try:
        async with config_conn.transaction():  # a savepoint: a refused repair leaves nothing behind
            repair = await repairs.request_repair(config_conn, jobs_conn, actor, action, job_id=job_id)  # type: ignore[arg-type]
    except DomainError as exc:
        return redirect(f"/scans/{run_id}", f"Job #{job_id}: {exc}")
    return redirect(f"/scans/{run_id}", f"Job #{job_id}: {action} requested (repair #{repair.id}).")


ROUTES = [scans_page, run_now, run_request_page, run_page, repair_job]
