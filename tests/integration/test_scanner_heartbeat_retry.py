"""A heartbeat that fails (ingest restarting) is retried until it lands, not skipped until the next interval:
two intervals of silence are the offline threshold, so one lost beat made a healthy scanner read as offline."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.scanner.agent import Agent
from app.scanner.client import Client
from app.scanner.settings import AgentSettings
from tests.integration.test_scanner_support import IngestEnv, ingest_env
from tests.support.postgres import PostgresServer
from tests.support.waiting import wait_until


@pytest.fixture()
def env(pg: PostgresServer, tmp_path: Path) -> Iterator[IngestEnv]:
    with ingest_env(pg, tmp_path) as e:
        yield e


def test_a_beat_that_fails_while_ingest_restarts_lands_once_it_is_back(env: IngestEnv, tmp_path: Path) -> None:
    scanner_id, key = env.enrolled_key("hb-retry")
    agent = Agent(AgentSettings(server_url=env.url, spool_dir=str(tmp_path / "spool")), key)
    agent._hb = Client(env.url, key=key)
    env.process.stop()
    restarted: list[float] = []

    def restart_later() -> None:
        time.sleep(1.5)  # the agent's first try meets a closed port
        env.process.start()
        restarted.append(time.time())

    helper = threading.Thread(target=restart_later)
    helper.start()
    try:
        asyncio.run(asyncio.wait_for(agent._heartbeat(), timeout=60))
    finally:
        helper.join()
    # The beat reached the database after the restart (ingest flushes beats within a few seconds).
    def last_beat() -> float | None:
        at = env.query("config", "SELECT extract(epoch FROM last_heartbeat_at) FROM scanners WHERE id = %s",
                       (scanner_id,))[0][0]
        return None if at is None else float(at)

    def beat_after_restart() -> bool:
        at = last_beat()
        return at is not None and at >= restarted[0] - 1

    wait_until(beat_after_restart, 30, "the failed beat retried",
               detail=lambda: f"last heartbeat {last_beat()}, ingest back at {restarted}")
