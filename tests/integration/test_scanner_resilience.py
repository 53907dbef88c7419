"""Nothing lost, nothing doubled: while the real agent streams ~20k results, the ingest process is killed
(SIGKILL) and restarted on the same address, then its port is black-holed for a while (nftables);
afterwards the stored results equal the expected set exactly, counted row by row."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_scanner_support import (
    AcceptAll,
    IngestEnv,
    agent_config,
    agent_enrol,
    ingest_env,
    running_agent,
)
from tests.support.postgres import PostgresServer
from tests.support.waiting import wait_until

FIRST, LAST = "127.78.0.0", "127.78.3.255"   # 1,024 loopback addresses of our own
LISTENERS = 20                               # x 20 ports = 20,480 open results


@contextlib.contextmanager
def blackholed(port: int) -> Iterator[None]:
    """Drop every packet to this TCP port on loopback (a partition, not a refusal) until the block ends."""
    table = f"mipo_cut_{port}"
    subprocess.run(["nft", "add", "table", "inet", table], check=True)
    subprocess.run(["nft", "add", "chain", "inet", table, "out",
                    "{ type filter hook output priority 0 ; policy accept ; }"], check=True)
    subprocess.run(["nft", "add", "rule", "inet", table, "out", "tcp", "dport", str(port), "drop"], check=True)
    try:
        yield
    finally:
        subprocess.run(["nft", "delete", "table", "inet", table], check=True)


@pytest.fixture()
def env(pg: PostgresServer, tmp_path: Path) -> Iterator[IngestEnv]:
    with ingest_env(pg, tmp_path) as e:
        yield e


def _ledger(env: IngestEnv, job_id: int) -> int:
    return int(env.query("results", "SELECT count(*) FROM ingested_batches WHERE job_id = %s", (job_id,))[0][0])


def test_ingest_crash_and_partition_lose_nothing_and_double_nothing(env: IngestEnv) -> None:
    listeners = AcceptAll(LISTENERS)
    try:
        enrolment = env.new_scanner("streamer")
        # Two scan processes: the parallel path streams through the same spool.
        config = agent_config(env, "agent", batch_size=250, batch_seconds=0.5, workers=2)
        assert agent_enrol(env, config, enrolment.token).returncode == 0
        ports = ",".join(str(p) for p in listeners.ports)
        with running_agent(env, config):
            _run, job_id = env.new_job(enrolment.scanner.id, [[FIRST, LAST]], ports,
                                       {"rate": 1500, "timeout_ms": 2000, "banner": False, "tls": False},
                                       cost=1024 * LISTENERS)
            wait_until(lambda: _ledger(env, job_id) >= 3, 60, "the first batches", interval=0.1)
            env.process.kill()
            time.sleep(4)   # the agent keeps scanning into its spool meanwhile
            env.process.start()
            wait_until(lambda: _ledger(env, job_id) >= 30, 60, "batches after the restart", interval=0.1)
            with blackholed(env.process.port):
                time.sleep(30)  # as long as the lab test cuts the link
            status = env.wait_job(job_id, timeout=180)
            assert status[0] == "completed", status
    finally:
        listeners.close()
    expected = {(f"127.78.{i // 256}.{i % 256}", p) for i in range(1024) for p in listeners.ports}
    rows = env.query("results", "SELECT host(ip), port FROM observations WHERE job_id = %s", (job_id,))
    stored = [(ip, port) for ip, port in rows]
    lost = expected - set(stored)
    duplicated = len(stored) - len(set(stored))
    assert (len(lost), duplicated) == (0, 0), f"lost {len(lost)}, duplicated {duplicated}"
    assert set(stored) == expected
    ledger = env.query("results", "SELECT count(*), sum(rows) FROM ingested_batches WHERE job_id = %s", (job_id,))
    assert ledger[0][1] == len(expected)
