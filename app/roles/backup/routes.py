"""Handlers of the backup API: list, create, status, restore, delete."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from litestar import delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from app.domain.backups import cycle, service, signing
from app.domain.backups.operations import OperationRunner
from app.domain.backups.schemas import BackupRead, OperationRead, RestoreRequest, StatusRead
from app.domain.backups.storage import DirectoryLock
from app.web.deps import AppSettings


@get("/backups")
async def list_backups(settings: AppSettings) -> list[BackupRead]:
    return await asyncio.to_thread(service.list_backups, settings)


@post("/backups", status_code=202)
async def create_backup(settings: AppSettings, runner: NamedDependency[OperationRunner]) -> OperationRead:
    async def work() -> str:
        return (await cycle.backup_cycle(settings)).backup_id

    return runner.start("backup", None, work)


@get("/status")
async def backup_status(settings: AppSettings, runner: NamedDependency[OperationRunner]) -> StatusRead:
    backups = await asyncio.to_thread(service.list_backups, settings)
    latest = next((b for b in backups if b.signature_valid), None)
    window = timedelta(hours=settings.backup.freshness_hours)
    fresh = latest is not None and latest.created_at >= datetime.now(UTC) - window
    return StatusRead(runner.current, latest, fresh, settings.backup.freshness_hours)


@post("/backups/{backup_id:str}/restore", status_code=202)
async def restore_backup(backup_id: FromPath[str], data: JSONBody[RestoreRequest], settings: AppSettings,
                         runner: NamedDependency[OperationRunner]) -> OperationRead:
    # Cheap checks answer at once (unknown id, bad signature); the full verification runs in the operation.
    key = signing.load_signing_key(settings)
    await asyncio.to_thread(service.load_verified_manifest, settings, key, backup_id, checksums=False)
    identity = data.identity

    async def work() -> str:
        await service.restore_backup(settings, backup_id, identity)  # records the `backup_restored` event
        return backup_id

    return runner.start("restore", backup_id, work)


@delete("/backups/{backup_id:str}")
async def delete_backup(backup_id: FromPath[str], settings: AppSettings) -> None:
    lock = DirectoryLock(service.backup_root(settings))
    lock.acquire()
    try:
        await asyncio.to_thread(service.delete_backup, settings, backup_id)
    finally:
        lock.release()
