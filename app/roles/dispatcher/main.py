"""The dispatcher process: single instance (advisory lock), schedules, planning, reconciling."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from datetime import UTC, datetime

import psycopg
from psycopg import AsyncConnection

from app.config import Settings
from app.db.connect import conninfo
from app.domain.reconciler.service import reconcile
from app.domain.repairs.executor import execute_repairs
from app.domain.runs.service import answer_run_requests, finalise_runs
from app.domain.schedules.runner import process_schedules
from app.roles.dispatcher import leader

log = logging.getLogger("mipo.dispatcher")


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def tick(config: AsyncConnection, jobs: AsyncConnection, results: AsyncConnection | None,
               settings: Settings) -> None:
    """One leader pass. Order matters: repairs and reconciling first free or move work, then new runs
    are planned against current scanner states, then finished runs close."""
    await execute_repairs(config, jobs, settings)
    await reconcile(config, jobs, settings)
    await process_schedules(config, jobs, settings, datetime.now(UTC))
    await answer_run_requests(config, jobs, settings)
    await finalise_runs(config, jobs, results)


async def _open(settings: Settings, which: str) -> AsyncConnection:
    return await AsyncConnection.connect(conninfo(settings, which), autocommit=True)  # type: ignore[arg-type]


async def lead(settings: Settings, stop: asyncio.Event, lock: AsyncConnection) -> None:
    """Work as the leader until stopped or until the lock's session is lost."""
    d = settings.dispatcher
    config = await _open(settings, "config")
    jobs = await _open(settings, "jobs")
    results: AsyncConnection | None = None
    results_missing = False
    try:
        while not stop.is_set():
            if not await leader.still_leading(lock, timeout=max(5.0, d.tick_seconds)):
                log.error("lost the dispatcher lock; stepping down")
                return
            if results is None or results.closed:
                # Finished runs owe their change detection in the jobs DB until this connection is back.
                try:
                    results = await _open(settings, "results")
                except psycopg.Error as exc:
                    if results is not None or not results_missing:  # once per outage, not every pass
                        log.warning("results database unavailable, change detection waits: %s", exc)
                    results, results_missing = None, True
                else:
                    results_missing = False
            try:
                await tick(config, jobs, results, settings)
            except psycopg.OperationalError as exc:
                log.warning("database unavailable during a pass: %s", exc)
                return  # reconnect everything, re-taking the lock first
            except Exception:  # one bad pass (a bug, odd data) must not end the singleton; systemd would
                # restart it anyway, but staying up keeps the lock and avoids a leader flap.
                log.exception("dispatcher pass failed; retrying next tick")
            await _sleep(stop, d.tick_seconds)
    finally:
        for conn in (config, jobs, results):
            if conn is not None:
                with contextlib.suppress(psycopg.Error, OSError):
                    await conn.close()


async def run(settings: Settings, stop: asyncio.Event) -> None:
    """Run until `stop` is set: standby while another dispatcher holds the lock, leader otherwise."""
    d = settings.dispatcher
    log.info("dispatcher started as %s", leader.identity())
    announced_standby = False
    while not stop.is_set():
        lock: AsyncConnection | None = None
        try:
            lock = await leader.connect_lock(settings)
            if await leader.try_lead(lock):
                log.info("dispatcher is the leader (%s)", leader.identity())
                announced_standby = False
                await lead(settings, stop, lock)
            elif not announced_standby:
                log.info("dispatcher is on standby: another instance holds the lock")
                announced_standby = True
        except (psycopg.Error, OSError) as exc:
            log.warning("jobs database unavailable: %s", exc)
        finally:
            await leader.release(lock)
        await _sleep(stop, d.standby_poll_seconds)
    log.info("dispatcher stopped")


def main(settings: Settings) -> int:
    async def _main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run(settings, stop)

    asyncio.run(_main())
    return 0
