"""The agent refuses a job with any target outside the authorised scope before sending a single packet:
nftables counters on the destinations (in scope and out of it) stay at zero, and the job fails as
`out_of_scope`."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_scanner_support import IngestEnv, agent_config, agent_enrol, ingest_env, running_agent
from tests.support.postgres import PostgresServer

OUTSIDE = "198.19.255.99"   # lab range, but outside the test appliance's scope (127.0.0.0/8, 198.18.0.0/24)
INSIDE = "127.79.0.1"       # in scope, and used by nothing else: any packet to it is the agent's
TABLE = "mipo_scope_test"


@contextlib.contextmanager
def counters() -> Iterator[dict[str, str]]:
    """Count (and, for OUTSIDE, drop) every packet this host sends to the two destinations."""
    rules = {OUTSIDE: "counter drop", INSIDE: "counter"}
    subprocess.run(["nft", "add", "table", "inet", TABLE], check=True)
    subprocess.run(["nft", "add", "chain", "inet", TABLE, "out",
                    "{ type filter hook output priority -10 ; policy accept ; }"], check=True)
    for addr, action in rules.items():
        subprocess.run(["nft", "add", "rule", "inet", TABLE, "out", "ip", "daddr", addr, *action.split()], check=True)
    try:
        yield rules
    finally:
        subprocess.run(["nft", "delete", "table", "inet", TABLE], check=True)


def packets() -> dict[str, int]:
    out = json.loads(subprocess.run(["nft", "-j", "list", "table", "inet", TABLE], capture_output=True,
                                    check=True, text=True).stdout)
    counts: dict[str, int] = {}
    for item in out["nftables"]:
        rule = item.get("rule")
        if not rule:
            continue
        addr = next(e["match"]["right"] for e in rule["expr"] if "match" in e)
        counts[addr] = next(e["counter"]["packets"] for e in rule["expr"] if "counter" in e)
    return counts


@pytest.fixture()
def env(pg: PostgresServer, tmp_path: Path) -> Iterator[IngestEnv]:
    with ingest_env(pg, tmp_path) as e:
        yield e


def test_out_of_scope_job_is_refused_without_a_single_packet(env: IngestEnv) -> None:
    enrolment = env.new_scanner("scoped")
    config = agent_config(env, "agent")
    assert agent_enrol(env, config, enrolment.token).returncode == 0
    with counters():
        # The counters do see connection attempts (a control, from the test itself).
        for addr in (OUTSIDE, INSIDE):
            with socket.socket() as s:
                s.settimeout(0.3)
                s.connect_ex((addr, 9))
        before = packets()
        assert before[OUTSIDE] >= 1 and before[INSIDE] >= 1
        with running_agent(env, config):
            _run, job_id = env.new_job(enrolment.scanner.id, [[INSIDE, INSIDE], [OUTSIDE, OUTSIDE]], "1-1024",
                                       cost=2048)
            status = env.wait_job(job_id, timeout=60)
            after = packets()
            # The agent is still alive and well: an in-scope job right after is scanned (and counted).
            _run2, job2 = env.new_job(enrolment.scanner.id, [[INSIDE, INSIDE]], "1-10", cost=10)
            assert env.wait_job(job2, timeout=60)[0] == "completed"
            control = packets()
    assert status[0:2] == ("failed", "out_of_scope"), status
    assert OUTSIDE in (status[2] or "")
    assert after == before, f"packets were sent: before {before}, after {after}"
    assert control[INSIDE] >= before[INSIDE] + 10
    assert env.query("results", "SELECT count(*) FROM observations WHERE job_id = %s", (job_id,)) == [(0,)]
    assert env.query("results", "SELECT complete FROM run_coverage WHERE job_id = %s", (job_id,)) == [(False,)]
    assert env.query("config", "SELECT severity, scanner_id FROM events WHERE class = 'job_out_of_scope'"
                     " AND job_id = %s", (job_id,)) == [("critical", enrolment.scanner.id)]
