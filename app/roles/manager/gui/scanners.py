"""Scanners: status and heartbeats, Add scanner (install command shown once), tokens, rotate, disable, drain."""

from __future__ import annotations

import msgspec
from litestar import Request, Response, get, post
from litestar.response import Template
from psycopg import AsyncConnection

from app.config import Settings
from app.domain.repairs import service as repairs
from app.domain.scanners import service
from app.domain.scanners.schemas import Enrolment, ScannerCreate, TokenCreate
from app.errors import DomainError
from app.roles.manager.auth import Actor
from app.roles.manager.gui.render import (
    FormInvalid,
    Pager,
    domain_errors,
    form_values,
    page,
    parse_form,
    redirect,
)
from app.web.deps import AppSettings, ConfigConn, JobsConn
from app.web.params import Id

ADMIN = {"min_role": "admin"}


async def _list(request: Request, conn: AsyncConnection, settings: Settings, *, status: int = 200,
                errors: dict[str, str] | None = None, values: dict[str, str] | None = None) -> Template:
    query = request.query_params.get("q", "").strip().lower()
    state = request.query_params.get("state", "")
    items = await service.list_scanners(conn, settings)
    if query:
        items = [s for s in items if query in f"{s.name} {s.description} {s.last_address or ''}".lower()]
    if state:
        items = [s for s in items if (state == "online" and s.online) or (state == "offline" and not s.online)
                 or (state == "outdated" and s.outdated) or s.status == state]
    pager = Pager.of(request).with_total(len(items))
    return page(request, "scanners.html", "Scanners", status=status, rows=items[pager.offset:pager.offset + 50],
                pager=pager, q=request.query_params.get("q", ""), state=state, errors=errors or {},
                values=values or {"rate_limit": "20000", "concurrency": "2000"})


def _shown_once(request: Request, enrolment: Enrolment, what: str) -> Template:
    return page(request, "scanner_enrolment.html", f"Install {enrolment.scanner.name}", enrolment=enrolment,
                what=what)


@get("/scanners")
async def scanners_page(request: Request, config_conn: ConfigConn,
                        settings: AppSettings) -> Template:
    return await _list(request, config_conn, settings)


@post("/scanners", opt=ADMIN)
async def add_scanner(request: Request, config_conn: ConfigConn, settings: AppSettings,
                      actor: Actor) -> Response:
    values = await form_values(request)
    try:
        data = parse_form(ScannerCreate, values)
        async with config_conn.transaction():  # a savepoint: a refused change leaves nothing behind
            enrolment = await service.create_scanner(config_conn, settings, actor, data)
    except (FormInvalid, DomainError) as exc:
        errors = exc.errors if isinstance(exc, FormInvalid) else domain_errors(exc)
        return await _list(request, config_conn, settings, status=422, errors=errors, values=values)
    return _shown_once(request, enrolment, "added")


@get("/scanners/{scanner_id:int}")
async def scanner_page(request: Request, scanner_id: Id, config_conn: ConfigConn,
                       settings: AppSettings) -> Template:
    scanner = await service.get_scanner(config_conn, settings, scanner_id)
    tokens = await service.list_tokens(config_conn, settings, scanner_id)
    return page(request, "scanner.html", f"Scanner {scanner.name}", scanner=scanner, tokens=tokens)


@post("/scanners/{scanner_id:int}/token", opt=ADMIN)
async def new_token(request: Request, scanner_id: Id, config_conn: ConfigConn,
                    settings: AppSettings, actor: Actor) -> Response:
    values = await form_values(request)
    try:
        data = msgspec.convert({"bind_network": values.get("bind_network") or None}, TokenCreate)
        async with config_conn.transaction():
            enrolment = await service.issue_token(config_conn, settings, actor, scanner_id, data)
    except DomainError as exc:
        scanner = await service.get_scanner(config_conn, settings, scanner_id)
        tokens = await service.list_tokens(config_conn, settings, scanner_id)
        return page(request, "scanner.html", f"Scanner {scanner.name}", status=422, scanner=scanner,
                    tokens=tokens, errors=domain_errors(exc))
    return _shown_once(request, enrolment, "given a new install token")


@post("/scanners/{scanner_id:int}/rotate", opt=ADMIN)
async def rotate(request: Request, scanner_id: Id, config_conn: ConfigConn,
                 settings: AppSettings, actor: Actor) -> Response:
    return _shown_once(request, await service.rotate_key(config_conn, settings, actor, scanner_id),
                       "rotated: its old key no longer works")


@post("/scanners/{scanner_id:int}/disable", opt=ADMIN)
async def disable(scanner_id: Id, config_conn: ConfigConn, settings: AppSettings,
                  actor: Actor) -> Response:
    scanner = await service.set_status(config_conn, settings, actor, scanner_id, "disabled")
    return redirect(f"/scanners/{scanner_id}", f"Scanner {scanner.name} disabled.")


@post("/scanners/{scanner_id:int}/enable", opt=ADMIN)
async def enable(scanner_id: Id, config_conn: ConfigConn, settings: AppSettings,
                 actor: Actor) -> Response:
    scanner = await service.set_status(config_conn, settings, actor, scanner_id, "active")
    return redirect(f"/scanners/{scanner_id}", f"Scanner {scanner.name} enabled ({scanner.status}).")


@post("/scanners/{scanner_id:int}/tokens/{token_id:int}/revoke", opt=ADMIN)
async def revoke(scanner_id: Id, token_id: Id, config_conn: ConfigConn, actor: Actor) -> Response:
    await service.revoke_token(config_conn, actor, scanner_id, token_id)
    return redirect(f"/scanners/{scanner_id}", f"Install token #{token_id} revoked.")


@post("/scanners/{scanner_id:int}/drain")
async def drain(scanner_id: Id, config_conn: ConfigConn, jobs_conn: JobsConn,
                actor: Actor) -> Response:
    repair = await repairs.request_repair(config_conn, jobs_conn, actor, "drain", scanner_id=scanner_id)
    return redirect(f"/scanners/{scanner_id}", f"Drain requested (repair #{repair.id}); the dispatcher moves its work.")


ROUTES = [scanners_page, add_scanner, scanner_page, new_token, rotate, disable, enable, revoke, drain]
