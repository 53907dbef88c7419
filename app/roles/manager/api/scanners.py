"""`/api/scanners`: add scanners (token + install command, shown once), list, tokens, rotate, disable."""

from __future__ import annotations

from litestar import get, patch, post
from litestar.params import JSONBody

from app.domain.scanners import service
from app.domain.scanners.schemas import (
    Enrolment,
    ScannerCreate,
    ScannerRead,
    ScannerUpdate,
    TokenCreate,
    TokenRead,
)
from app.roles.manager.auth import Actor
from app.web.deps import AppSettings, ConfigConn
from app.web.params import Id

ADMIN = {"min_role": "admin"}


@get("/scanners")
async def list_scanners(config_conn: ConfigConn, settings: AppSettings) -> list[ScannerRead]:
    return await service.list_scanners(config_conn, settings)


@post("/scanners", opt=ADMIN)
async def create_scanner(data: JSONBody[ScannerCreate], config_conn: ConfigConn, settings: AppSettings,
                         actor: Actor) -> Enrolment:
    return await service.create_scanner(config_conn, settings, actor, data)


@get("/scanners/{scanner_id:int}")
async def get_scanner(scanner_id: Id, config_conn: ConfigConn, settings: AppSettings) -> ScannerRead:
    return await service.get_scanner(config_conn, settings, scanner_id)


@patch("/scanners/{scanner_id:int}", opt=ADMIN)
async def update_scanner(scanner_id: Id, data: JSONBody[ScannerUpdate], config_conn: ConfigConn, settings: AppSettings,
                         actor: Actor) -> ScannerRead:
    return await service.update_scanner(config_conn, settings, actor, scanner_id, data)


@get("/scanners/{scanner_id:int}/tokens")
async def list_tokens(scanner_id: Id, config_conn: ConfigConn, settings: AppSettings) -> list[TokenRead]:
    return await service.list_tokens(config_conn, settings, scanner_id)


@post("/scanners/{scanner_id:int}/tokens", opt=ADMIN)
async def create_token(scanner_id: Id, data: JSONBody[TokenCreate], config_conn: ConfigConn, settings: AppSettings,
                       actor: Actor) -> Enrolment:
    return await service.issue_token(config_conn, settings, actor, scanner_id, data)


@post("/scanners/{scanner_id:int}/tokens/{token_id:int}/revoke", opt=ADMIN, status_code=200)
async def revoke_token(scanner_id: Id, token_id: Id, config_conn: ConfigConn, actor: Actor) -> TokenRead:
    return await service.revoke_token(config_conn, actor, scanner_id, token_id)


@post("/scanners/{scanner_id:int}/rotate-key", opt=ADMIN)
async def rotate_key(scanner_id: Id, config_conn: ConfigConn, settings: AppSettings, actor: Actor) -> Enrolment:
    return await service.rotate_key(config_conn, settings, actor, scanner_id)


@post("/scanners/{scanner_id:int}/disable", opt=ADMIN, status_code=200)
async def disable_scanner(scanner_id: Id, config_conn: ConfigConn, settings: AppSettings,
                          actor: Actor) -> ScannerRead:
    return await service.set_status(config_conn, settings, actor, scanner_id, "disabled")


@post("/scanners/{scanner_id:int}/enable", opt=ADMIN, status_code=200)
async def enable_scanner(scanner_id: Id, config_conn: ConfigConn, settings: AppSettings,
                         actor: Actor) -> ScannerRead:
    return await service.set_status(config_conn, settings, actor, scanner_id, "active")


ROUTES = [list_scanners, create_scanner, get_scanner, update_scanner, list_tokens, create_token, revoke_token,
          rotate_key, disable_scanner, enable_scanner]
