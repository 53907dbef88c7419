"""`/api/backups`: the backups page's calls, relayed to the internal backup API with the manager's credential."""

from __future__ import annotations

from litestar import get, post
from litestar.params import FromPath, JSONBody

from app.domain.audit.service import record
from app.domain.backups.schemas import BackupRead, OperationRead, RestoreRequest, StatusRead
from app.domain.backups.storage import BACKUP_ID
from app.errors import NotFound
from app.roles.manager import backup_client
from app.roles.manager.auth import Actor
from app.web.deps import AppSettings, ConfigConn

ADMIN = {"min_role": "admin"}


@get("/backups")
async def list_backups(settings: AppSettings) -> list[BackupRead]:
    return await backup_client.list_backups(settings)


@get("/backups/status")
async def backup_status(settings: AppSettings) -> StatusRead:
    return await backup_client.backup_status(settings)


@post("/backups", status_code=202)
async def create_backup(settings: AppSettings, config_conn: ConfigConn, actor: Actor) -> OperationRead:
    operation = await backup_client.start_backup(settings)
    await record(config_conn, actor, "backup.create", "backup_operation", operation.id, None,
                 {"kind": operation.kind})
    return operation


@post("/backups/{backup_id:str}/restore", status_code=202, opt=ADMIN)
async def restore_backup(backup_id: FromPath[str], data: JSONBody[RestoreRequest], settings: AppSettings,
                         config_conn: ConfigConn, actor: Actor) -> OperationRead:
    if not BACKUP_ID.match(backup_id):
        raise NotFound(f"no backup {backup_id!r}", reason="backup_not_found")
    # The identity passes through for this one restore; it is neither logged nor audited nor stored.
    # The audit record may be lost with the config database the restore replaces; the backup service
    # records a `backup_restored` event in the restored database.
    await record(config_conn, actor, "backup.restore", "backup", backup_id, None, {"backup_id": backup_id})
    return await backup_client.start_restore(settings, backup_id, data.identity)


ROUTES = [list_backups, backup_status, create_backup, restore_backup]
