"""Backups page: freshness, the current operation (live), the list, back up now, restore (admin)."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, get, post
from litestar.params import FromPath
from litestar.response import Template

from app.config import Settings
from app.domain.audit.service import record
from app.domain.backups.schemas import RestoreRequest
from app.domain.backups.storage import BACKUP_ID
from app.errors import DomainError, NotFound
from app.roles.manager import backup_client
from app.roles.manager.auth import Actor
from app.roles.manager.gui.render import form_values, page, redirect
from app.web.deps import AppSettings, ConfigConn

ADMIN = {"min_role": "admin"}


async def _state(settings: Settings) -> dict[str, Any]:
    try:
        status = await backup_client.backup_status(settings)
        backups = await backup_client.list_backups(settings)
    except DomainError as exc:
        return {"current": None, "backups": [], "unavailable": str(exc)}
    return {"current": status, "backups": backups, "unavailable": ""}


@get("/backups")
async def backups_page(request: Request, settings: AppSettings) -> Template:
    template = "_backup_status.html" if request.headers.get("hx-request") else "backups.html"
    return page(request, template, "Backups", **await _state(settings))


@post("/backups")
async def backup_now(settings: AppSettings, config_conn: ConfigConn,
                     actor: Actor) -> Response:
    operation = await backup_client.start_backup(settings)
    await record(config_conn, actor, "backup.create", "backup_operation", operation.id, None, {"kind": operation.kind})
    return redirect("/backups", "Backup started.")


@post("/backups/{backup_id:str}/restore", opt=ADMIN)
async def restore(request: Request, backup_id: FromPath[str], settings: AppSettings,
                  config_conn: ConfigConn, actor: Actor) -> Response:
    if not BACKUP_ID.match(backup_id):
        raise NotFound(f"no backup {backup_id!r}", reason="backup_not_found")
    identity = (await form_values(request)).get("identity", "")
    try:
        data = msgspec.convert({"identity": identity}, RestoreRequest)
    except msgspec.ValidationError as exc:
        return page(request, "backups.html", "Backups", status=422, errors={f"identity-{backup_id}": str(exc)},
                    **await _state(settings))
    # As in the API: the identity is used for this one restore, never stored, logged or audited.
    await record(config_conn, actor, "backup.restore", "backup", backup_id, None, {"backup_id": backup_id})
    await backup_client.start_restore(settings, backup_id, data.identity)
    return redirect("/backups", f"Restore of {backup_id} started; sessions may end when the config database "
                                "is replaced.")


ROUTES = [backups_page, backup_now, restore]
