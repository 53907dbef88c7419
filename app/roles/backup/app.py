"""The backup service's internal HTTP API (no Traefik route; only the manager calls it)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from litestar import Litestar, Router
from litestar.di import Provide

from app.config import Settings
from app.domain.backups import cycle
from app.domain.backups.operations import OperationRunner
from app.domain.backups.service import backup_root
from app.domain.backups.storage import DirectoryLock
from app.roles.backup.guard import require_manager_token
from app.roles.backup.routes import backup_status, create_backup, delete_backup, list_backups, restore_backup
from app.web.factory import build_role_app

log = logging.getLogger("mipo.backup")
FRESHNESS_CHECK_SECONDS = 3600.0


async def _freshness_loop(settings: Settings) -> None:
    """Hourly, independent of the timer: a timer that never fires is noticed too."""
    while True:
        try:
            await cycle.freshness_check(settings)
        except Exception as exc:  # a database outage must not end the loop
            log.warning("freshness check failed: %s", exc)
        await asyncio.sleep(FRESHNESS_CHECK_SECONDS)


def create_app(settings: Settings) -> Litestar:
    """Every route the backup API serves is listed here; each one requires the manager's credential."""
    runner = OperationRunner(DirectoryLock(backup_root(settings)))
    api = Router(
        "/",
        route_handlers=[list_backups, create_backup, backup_status, restore_backup, delete_backup],
        guards=[require_manager_token],
        dependencies={"runner": Provide(lambda: runner, use_cache=True, sync_to_thread=False)},
    )
    tasks: list[asyncio.Task[None]] = []

    async def start_freshness_loop() -> None:
        tasks.append(asyncio.create_task(_freshness_loop(settings)))

    async def stop_background() -> None:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await runner.wait()

    app = build_role_app(settings, "backup", ("config", "jobs", "results"), [api],
                         on_startup=[start_freshness_loop], on_shutdown=[stop_background])
    app.state.settings = settings
    return app
