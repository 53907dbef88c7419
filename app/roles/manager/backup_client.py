"""The manager's client of the internal backup API (list, status, back up, restore), used by the API and GUI."""

from __future__ import annotations

from typing import Any

import httpx
import msgspec

from app.config import ConfigError, Settings
from app.domain.backups.schemas import API_TOKEN_HEADER, BackupRead, OperationRead, StatusRead
from app.errors import DomainError, Unavailable

TIMEOUT = httpx.Timeout(30.0, connect=5.0)


class BackupServiceError(DomainError):
    """The backup service refused; its status and reason are passed on to the operator."""


async def _request(settings: Settings, method: str, path: str, body: object = None) -> Any:
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


async def list_backups(settings: Settings) -> list[BackupRead]:
    return msgspec.convert(await _request(settings, "GET", "/backups"), list[BackupRead])


async def backup_status(settings: Settings) -> StatusRead:
    return msgspec.convert(await _request(settings, "GET", "/status"), StatusRead)


async def start_backup(settings: Settings) -> OperationRead:
    return msgspec.convert(await _request(settings, "POST", "/backups"), OperationRead)


async def start_restore(settings: Settings, backup_id: str, identity: str) -> OperationRead:
    """The identity passes through for this one restore; it is neither logged nor stored."""
    raw = await _request(settings, "POST", f"/backups/{backup_id}/restore", {"identity": identity})
    return msgspec.convert(raw, OperationRead)
