"""One scheduled backup run (timer or API): back up, prune, check freshness; failures become events."""

from __future__ import annotations

import asyncio
import logging
import sys

import psycopg

from app.config import Settings
from app.db.connect import conninfo
from app.domain.backups import service
from app.domain.backups.schemas import Manifest
from app.domain.backups.storage import DirectoryLock
from app.domain.events.service import Severity, emit
from app.errors import Conflict, DomainError

log = logging.getLogger("mipo.backup")


async def record_event(settings: Settings, event_class: str, message: str, severity: Severity) -> None:
    """Best effort: a config database that is down must not hide the original failure."""
    try:
        async with await psycopg.AsyncConnection.connect(conninfo(settings, "config")) as conn:
            await emit(conn, event_class, message, severity=severity)
    except psycopg.Error as exc:
        log.warning("could not record event %s: %s", event_class, exc)


async def freshness_check(settings: Settings) -> bool:
    async with await psycopg.AsyncConnection.connect(conninfo(settings, "config")) as conn:
        return await service.check_freshness(settings, conn)


async def backup_cycle(settings: Settings) -> Manifest:
    """The caller holds the directory lock."""
    try:
        manifest = await service.create_backup(settings)
    except Exception as exc:
        await record_event(settings, "backup_failed", f"backup failed: {exc}", "critical")
        await _freshness_best_effort(settings)
        raise
    await asyncio.to_thread(service.prune, settings)
    await _freshness_best_effort(settings)
    return manifest


async def _freshness_best_effort(settings: Settings) -> None:
    try:
        await freshness_check(settings)
    except (psycopg.Error, DomainError) as exc:
        log.warning("freshness check failed: %s", exc)


def backup_now_command(settings: Settings) -> int:
    """`python -m app backup-now` (the systemd timer's one-shot): 0 done, 1 failed, 75 busy."""
    lock = DirectoryLock(service.backup_root(settings))
    try:
        lock.acquire()
    except Conflict as exc:
        print(f"mipo: backup-now: {exc}", file=sys.stderr)
        return 75  # EX_TEMPFAIL: the timer tries again next time
    try:
        manifest = asyncio.run(backup_cycle(settings))
    except (DomainError, psycopg.Error, OSError) as exc:
        print(f"mipo: backup-now failed: {exc}", file=sys.stderr)
        return 1
    finally:
        lock.release()
    print(f"backup {manifest.backup_id} written and verified")
    return 0
