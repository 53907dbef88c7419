"""The dispatcher process: single instance (advisory lock), schedules, planning, reconciling."""

from __future__ import annotations

import asyncio
import logging

from app.config import Settings

log = logging.getLogger("mipo.dispatcher")


async def run(settings: Settings, stop: asyncio.Event) -> None:
    """Run until `stop` is set."""
    log.info("dispatcher started")
    await stop.wait()


def main(settings: Settings) -> int:
    stop = asyncio.Event()
    asyncio.run(run(settings, stop))
    return 0
