"""Heartbeats: many scanners cost one UPDATE per flush; a scanner is online while it heartbeats and
offline after the configured silence."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from app.domain.scanners import service
from app.domain.scanners.heartbeats import HeartbeatBuffer
from tests.integration.test_scanner_support import IngestEnv, agent_config, agent_enrol, ingest_env, running_agent
from tests.support.postgres import PostgresServer
from tests.support.waiting import wait_until


@pytest.fixture()
def env(pg: PostgresServer, tmp_path: Path) -> Iterator[IngestEnv]:
    with ingest_env(pg, tmp_path) as e:
        yield e


def test_ten_thousand_heartbeats_are_one_transaction(env: IngestEnv) -> None:
    """Coalesced in memory: 10,000 scanners' beats reach the database in a single commit."""
    with psycopg.connect(env.dsn("config"), autocommit=True) as conn:
        conn.execute("INSERT INTO scanners (name) SELECT 'bulk-' || g FROM generate_series(1, 10000) g")
        ids = [r[0] for r in conn.execute("SELECT id FROM scanners WHERE name LIKE 'bulk-%%'").fetchall()]

    async def go() -> int:
        buffer = HeartbeatBuffer()
        for _ in range(3):  # repeated beats from the same scanners only keep the latest
            for sid in ids:
                buffer.record(sid, "0.1.0", 0.5, 1, "198.18.0.10")
        buffer.record(ids[0], "1.0-ß", 0.25, 3, "2001:db8::5")  # the latest beat wins; text and IPv6 kept as sent
        async with AsyncConnectionPool(env.dsn("config"), min_size=1, max_size=1, open=False) as pool:
            await pool.open()
            written = await buffer.flush(pool)
            assert await buffer.flush(pool) == 0  # nothing new: no transaction at all
            assert buffer.flushes == 1
            return written

    assert asyncio.run(go()) == 10000
    rows = env.query("config", "SELECT count(*), count(*) FILTER (WHERE status = 'active' AND version = '0.1.0'"
                     " AND running_jobs = 1 AND host(last_address) = '198.18.0.10') FROM scanners"
                     " WHERE name LIKE 'bulk-%%'")
    assert rows == [(10000, 9999)]
    first = env.query("config", "SELECT version, load, running_jobs, host(last_address),"
                      " abs(extract(epoch FROM now() - last_heartbeat_at)) < 60 FROM scanners WHERE id = %s", (ids[0],))
    assert first == [("1.0-ß", 0.25, 3, "2001:db8::5", True)]


def test_scanner_is_online_while_it_heartbeats_and_offline_after_the_silence(env: IngestEnv) -> None:
    enrolment = env.new_scanner("pulse")
    config = agent_config(env, "agent")
    assert agent_enrol(env, config, enrolment.token).returncode == 0

    def online() -> bool:
        scanner = env._with_config(lambda c: service.get_scanner(c, env.owner, enrolment.scanner.id))
        return bool(scanner.online)

    assert not online()
    with running_agent(env, config):
        wait_until(online, 20, "online while the agent heartbeats")
    # The test settings: heartbeat every 1 s, offline after 3 s of silence.
    wait_until(lambda: not online(), 20, "offline after the agent stopped")
