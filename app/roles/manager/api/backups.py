"""`/api/backups`: the backups page's calls, relayed to the internal backup API with the manager's credential."""

from __future__ import annotations

from typing import Any

import httpx
import msgspec
from litestar import get, post
from litestar.di import NamedDependency
from psycopg import AsyncConnection

from app.config import ConfigError, Settings
from app.domain.audit.service import record
from app.domain.backups.schemas import API_TOKEN_HEADER, BackupRead, OperationRead, RestoreRequest, StatusRead
from app.domain.backups.storage import BACKUP_ID
from app.errors import DomainError, NotFound, Unavailable

ADMIN = {"min_role": "admin"}
TIMEOUT = httpx.Timeout(30.0, connect=5.0)


class BackupServiceError(DomainError):
    """The backup service refused; its status and reason are passed on to the operator."""


async def _call(settings: Settings, method: str, path: str, body: object = None) -> Any:
    try:
        token = settings.credential(settings.backup.api_token_credential)
    except ConfigError as exc:
        raise Unavailable(f"the manager has no backup API credential: {exc}", reason="backup_unavailable") from None
    try:
        async with httpx.AsyncClient(base_url=settings.backup.url, timeout=TIMEOUT, trust_env=False) as client:
            response = await client.request(method, path, json=body, headers={API_TOKEN_HEADER: token})
    except httpx.HTTPError as exc:
        raise Unavailable(f"the backup service at {settings.backup.url} did not answer: {type(exc).__name__}",
                          reason="backup_unavailable") from None
    if response.status_code == 401:
        # Our own credential was refused: a deploy problem, not the operator's session.
        raise Unavailable("the backup service refused the manager's credential; check backup-api-token on both "
                          "hosts", reason="backup_credential_rejected")
    if response.status_code >= 400:
        try:
            problem = response.json()
        except ValueError:
            problem = {}
        error = BackupServiceError(str(problem.get("detail") or problem.get("title") or response.reason_phrase),
                                   reason=str(problem.get("reason") or "backup_refused"))
        error.status_code = response.status_code
        raise error
    return response.json() if response.content else None


@get("/backups")
async def list_backups(settings: NamedDependency[Settings]) -> list[BackupRead]:
    return msgspec.convert(await _call(settings, "GET", "/backups"), list[BackupRead])


@get("/backups/status")
async def backup_status(settings: NamedDependency[Settings]) -> StatusRead:
    return msgspec.convert(await _call(settings, "GET", "/status"), StatusRead)


@post("/backups", status_code=202)
async def create_backup(settings: NamedDependency[Settings], config_conn: AsyncConnection, actor: str) -> OperationRead:
    operation = msgspec.convert(await _call(settings, "POST", "/backups"), OperationRead)
    await record(config_conn, actor, "backup.create", "backup_operation", operation.id, None,
                 {"kind": operation.kind})
    return operation


@post("/backups/{backup_id:str}/restore", status_code=202, opt=ADMIN)
async def restore_backup(backup_id: str, data: RestoreRequest, settings: NamedDependency[Settings],
                         config_conn: AsyncConnection, actor: str) -> OperationRead:
    if not BACKUP_ID.match(backup_id):
        raise NotFound(f"no backup {backup_id!r}", reason="backup_not_found")
    # The identity passes through for this one restore; it is neither logged nor audited nor stored.
    # The audit record may be lost with the config database the restore replaces; the backup service
    # records a `backup_restored` event in the restored database.
    await record(config_conn, actor, "backup.restore", "backup", backup_id, None, {"backup_id": backup_id})
    raw = await _call(settings, "POST", f"/backups/{backup_id}/restore", {"identity": data.identity})
    return msgspec.convert(raw, OperationRead)


ROUTES = [list_backups, backup_status, create_backup, restore_backup]
