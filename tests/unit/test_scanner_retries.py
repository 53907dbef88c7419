"""Probes that got no answer are tried again: a lost SYN must not make an open port read as filtered.

The loss is made by nftables in a network namespace of its own (`unshare --net`: it ends with the scan's
process, and the table is deleted before that): the first SYN(s) to each "lossy" port are dropped (or the
first SYN-ACK(s) from it), every later one passes. The scan's timeout (0.3 s) is shorter than the kernel's
own SYN retransmission (1 s), so only the engine's retry can find those ports open.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from app.scanner.agent import Agent
from app.scanner.engine import DEFAULT_RETRIES, parse_retries
from app.scanner.settings import AgentSettings

ROOT = Path(__file__).resolve().parents[2]
PORTS = (1000, 1599)          # probed; nothing listens but the ports below: the rest answer RST (closed)
LOSSY = (1100, 1400, 1550)    # listening; their first SYN(s) are dropped (in both processes' chunks)
OPEN = 1200                   # listening, never dropped
SILENT = 1300                 # every SYN dropped: never answers

# Runs inside the new namespace: loopback up, the listeners, the nft table, one scan; prints a JSON summary.
SCAN = r"""
import json, socket, subprocess, sys
sys.path.insert(0, sys.argv[1])
from app.scanner.engine import ConnectScanner
from app.scanner.parallel import ParallelScanner

cfg = json.loads(sys.argv[2])
lo, hi = cfg["ports"]
lossy, drops = cfg["lossy"], cfg["drops"]
# Lose the SYNs to a lossy port, or the SYN-ACKs from it (the server is then left with a half-open connection).
flags, port = ("syn", "tcp dport") if cfg["lose"] == "syn" else ("syn | ack", "tcp sport")
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
held = [socket.create_server(("127.0.0.1", p)) for p in [*lossy, cfg["open"]]]
syn = f"ip daddr 127.0.0.1 tcp flags & (syn | ack) == {flags}"
sets = "".join(f"  set seen{i} {{ type inet_service; flags dynamic; }}\n" for i in range(1, drops + 1))
ports = "{ " + ", ".join(map(str, lossy)) + " }"
# The first SYN to a lossy port enters seen1 and is dropped, the next seen2 and is dropped, ... ; once in
# the last set, a port's SYNs pass.
rules = [f"{syn} {port} {ports} {port} @seen{drops} accept"]
rules += [f"{syn} {port} {ports} {port} @seen{i - 1} add @seen{i} {{ {port} }} drop" for i in range(drops, 1, -1)]
rules += [f"{syn} {port} {ports} add @seen1 {{ {port} }} drop",
          f"ip daddr 127.0.0.1 tcp flags & (syn | ack) == syn tcp dport {cfg['silent']} counter drop"]
table = ("table inet retries {\n" + sets + "  chain output {\n   type filter hook output priority 0; policy accept;\n"
         + "".join(f"   {r}\n" for r in rules) + "  }\n}\n")
subprocess.run(["nft", "-f", "-"], input=table, text=True, check=True)
try:
    found = []
    if cfg["workers"] > 1:
        scanner = ParallelScanner(20000, 200, 0.3, cfg["workers"], start="fork", retries=cfg["retries"])
        stats = scanner.run_blocking([["127.0.0.1", "127.0.0.1"]], f"{lo}-{hi}", lambda o: found.append(o.port))
    else:
        engine = ConnectScanner(20000, 200, 0.3, cfg["retries"])
        stats = engine.run_blocking([("127.0.0.1", p) for p in range(lo, hi + 1)], lambda o: found.append(o.port))
    listed = json.loads(subprocess.run(["nft", "-j", "list", "set", "inet", "retries", f"seen{drops}"],
                                       capture_output=True, text=True, check=True).stdout)
    passed = [s["set"].get("elem", []) for s in listed["nftables"] if "set" in s][0]
finally:
    subprocess.run(["nft", "delete", "table", "inet", "retries"], check=False)
    for s in held:
        s.close()
print(json.dumps({"found": sorted(found), "attempts": stats.attempts, "retried": stats.retried,
                  "open": stats.open, "closed": stats.closed, "filtered": stats.filtered, "errors": stats.errors,
                  "dropped_for": sorted(passed)}))
"""


def _scan_with_loss(drops: int, retries: int, workers: int = 1, lose: str = "syn") -> dict[str, Any]:
    if os.geteuid() != 0 or shutil.which("nft") is None or shutil.which("unshare") is None:
        pytest.skip("needs root, nft and unshare (a network namespace of its own)")
    cfg = {"ports": PORTS, "lossy": LOSSY, "open": OPEN, "silent": SILENT, "drops": drops, "retries": retries,
           "workers": workers, "lose": lose}
    done = subprocess.run(["unshare", "--net", sys.executable, "-c", SCAN, str(ROOT), json.dumps(cfg)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    # The table did its part: every lossy port lost its first `drops` SYNs (or SYN-ACKs): it reached the last set.
    assert result["dropped_for"] == sorted(LOSSY)
    return result


PROBES = PORTS[1] - PORTS[0] + 1


@pytest.mark.parametrize(("drops", "retries", "workers", "lose"), [
    (1, 1, 1, "syn"), (2, 2, 1, "syn"), (1, 1, 2, "syn"), (1, 1, 1, "synack"), (2, 3, 1, "synack")])
def test_open_ports_whose_first_syns_were_lost_are_found_by_retries(drops: int, retries: int, workers: int,
                                                                     lose: str) -> None:
    """Each lossy port is found open on its last try; the silent port is still filtered after all of its
    tries; every connect is counted, and each probe once by its final answer. A lost SYN-ACK leaves the
    server a half-open connection: a retry from the same source port would meet it and fail."""
    r = _scan_with_loss(drops, retries, workers, lose)
    assert r["found"] == sorted([*LOSSY, OPEN])
    retried = len(LOSSY) * drops + retries  # the lossy ports' lost tries, and each retry of the silent port
    assert (r["open"], r["closed"], r["filtered"], r["errors"]) == (4, PROBES - 5, 1, 0)
    assert (r["attempts"], r["retried"]) == (PROBES + retried, retried)


@pytest.mark.parametrize(("drops", "retries"), [(1, 0), (2, 1)])
def test_with_fewer_retries_than_lost_syns_the_ports_read_filtered(drops: int, retries: int) -> None:
    """retries 0: one attempt per probe, as before retries existed; too few retries: still filtered."""
    r = _scan_with_loss(drops, retries)
    assert r["found"] == [OPEN]
    retried = (len(LOSSY) + 1) * retries
    assert (r["open"], r["closed"], r["filtered"], r["errors"]) == (1, PROBES - 5, 4, 0)
    assert (r["attempts"], r["retried"]) == (PROBES + retried, retried)


@pytest.mark.parametrize(("value", "expected"), [(0, 0), (1, 1), (3, 3), (-1, None), (4, None), (1.0, None),
                                                 (True, None), ("1", None), (None, None), ([1], None)])
def test_retries_option_is_an_integer_from_0_to_3(value: object, expected: int | None) -> None:
    assert parse_retries(value) == expected


HOST = "127.80.0.2"


@pytest.mark.parametrize(("options", "attempts", "warned"), [
    ({"retries": 2}, 3, False), ({}, 1 + DEFAULT_RETRIES, False), ({"retries": "many"}, 1 + DEFAULT_RETRIES, True),
    ({"retries": 7}, 1 + DEFAULT_RETRIES, True), ({"retries": 0}, 1, False)])
def test_agent_passes_the_jobs_retries_option_and_warns_once_about_a_bad_one(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, options: dict[str, Any], attempts: int,
        warned: bool) -> None:
    """A job probing one port that never answers (its accept queue is full, so its SYNs are dropped):
    the agent's log line counts 1 + retries connects, and the job completes whatever the option holds."""
    silent = socket.socket()
    silent.bind((HOST, 0))
    silent.listen(0)
    filler = socket.create_connection(silent.getsockname(), timeout=5)  # the queue is now full
    port = silent.getsockname()[1]
    agent = Agent(AgentSettings(server_url="https://127.0.0.1:9", spool_dir=str(tmp_path)), "k")
    agent.scope = ["127.80.0.0/16"]
    job = {"job_id": 7, "lease_token": 1, "targets": [[HOST, HOST]], "ports": str(port),
           "options": {"timeout_ms": 200, "banner": False, "tls": False, **options}}

    async def run() -> None:
        agent._spooled = asyncio.Event()
        await agent.run_job(job)

    caplog.set_level(logging.INFO, logger="mipo-scanner")
    try:
        asyncio.run(run())
    finally:
        filler.close()
        silent.close()
    done = [r.getMessage() for r in caplog.records if "job 7 done" in r.getMessage()]
    assert len(done) == 1 and f": {attempts} probes, 0 open" in done[0]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == (1 if warned else 0)
    complete = json.loads(next(tmp_path.glob("*complete*")).read_text())
    assert complete["status"] == "completed" and complete["scanned"] == 1
