"""An agent gives back the jobs it cannot finish: on a clean stop (SIGTERM) it spools and sends what it found
and releases the lease; after a crash (SIGKILL) it releases the leftover lease at its next start. Either way
the job is pending again long before its lease (600 s here) could expire, and a new attempt completes it."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.test_scanner_support import (
    FAST_SCANNER,
    AcceptAll,
    IngestEnv,
    agent_config,
    agent_enrol,
    ingest_env,
    running_agent,
)
from tests.support.postgres import PostgresServer
from tests.support.waiting import wait_until

# 256 loopback addresses x 4 ports at 80 probes/s: ~13 s per attempt, so a stop lands mid-job.
NET = "127.83.0"
SLOW = {"rate": 80, "timeout_ms": 500, "banner": False, "tls": False}
LONG_LEASE = {**FAST_SCANNER, "lease_seconds": 600.0}


@pytest.fixture()
def env(pg: PostgresServer, tmp_path: Path) -> Iterator[IngestEnv]:
    with ingest_env(pg, tmp_path, scanner=LONG_LEASE) as e:
        yield e


@pytest.fixture()
def listeners() -> Iterator[AcceptAll]:
    found = AcceptAll(4)
    yield found
    found.close()


def _job(env: IngestEnv, job_id: int) -> tuple[Any, ...]:
    return env.query("jobs", "SELECT status, scanner_id, lease_token, attempts FROM jobs WHERE id = %s",
                     (job_id,))[0]


def _ledger(env: IngestEnv, job_id: int) -> int:
    return int(env.query("results", "SELECT count(*) FROM ingested_batches WHERE job_id = %s", (job_id,))[0][0])


def _released_events(env: IngestEnv, job_id: int) -> list[tuple[Any, ...]]:
    return env.query("config", "SELECT scanner_id, action, details->>'reason', details->>'taken' FROM events"
                     " WHERE class = 'job_released' AND job_id = %s ORDER BY id", (job_id,))


def _attempts(env: IngestEnv, job_id: int) -> list[tuple[Any, ...]]:
    return env.query("jobs", "SELECT attempt, scanner_id, lease_token, outcome, ended_at IS NOT NULL"
                     " FROM job_attempts WHERE job_id = %s ORDER BY attempt", (job_id,))


def _start_mid_job(env: IngestEnv, name: str, ports: list[int], workers: int = 1) -> tuple[int, Path, int]:
    """(scanner_id, agent config, job_id) of a slow job over NET, enrolled but not yet started."""
    enrolment = env.new_scanner(name)
    config = agent_config(env, name, batch_size=20, batch_seconds=0.3, workers=workers)
    assert agent_enrol(env, config, enrolment.token).returncode == 0
    _run, job_id = env.new_job(enrolment.scanner.id, [[f"{NET}.0", f"{NET}.255"]],
                               ",".join(str(p) for p in ports), SLOW, cost=256 * len(ports))
    return enrolment.scanner.id, config, job_id


def _check_results(env: IngestEnv, job_id: int, ports: list[int]) -> None:
    """The union of every attempt's results is exactly the open ports; each batch was stored once."""
    expected = {(f"{NET}.{i}", p) for i in range(256) for p in ports}
    rows = env.query("results", "SELECT host(ip), port FROM observations WHERE job_id = %s", (job_id,))
    assert {(ip, port) for ip, port in rows} == expected
    ledger = env.query("results", "SELECT count(*), count(DISTINCT batch_seq), coalesce(sum(rows), 0)"
                       " FROM ingested_batches WHERE job_id = %s", (job_id,))[0]
    assert ledger[0] == ledger[1] and ledger[2] == len(rows), (ledger, len(rows))


@pytest.mark.parametrize("workers", [1, 2], ids=["one-process", "forked-workers"])
def test_sigterm_mid_job_releases_the_lease_and_a_restart_completes_it(
        env: IngestEnv, listeners: AcceptAll, workers: int) -> None:
    scanner_id, config, job_id = _start_mid_job(env, "stopper", listeners.ports, workers)
    # In a session of its own, so SIGTERM can go to the whole group, as systemd stops a unit (its workers too).
    with running_agent(env, config, argv_prefix=("setsid",)) as agent:
        wait_until(lambda: _ledger(env, job_id) >= 2, 60, "the first batches", interval=0.1)
        status, _sid, held_lease, _ = _job(env, job_id)
        assert status == "running"
        os.killpg(agent.pid, signal.SIGTERM)
        assert agent.wait(timeout=30) == 0
    # Pending again under a new token for the same scanner: the lease (600 s) cannot have expired.
    state = wait_until(lambda: (lambda j: j if j[0] == "pending" else None)(_job(env, job_id)), 15,
                       "the job pending again", detail=lambda: f"{_job(env, job_id)}; see {config.parent}")
    assert state[1] == scanner_id and state[2] > held_lease and state[3] == 1
    assert _released_events(env, job_id) == [(scanner_id, "redispatch", "agent stopping", "requeued")]
    assert _attempts(env, job_id) == [(1, scanner_id, held_lease, "requeued:released", True)]
    assert not list((config.parent / "spool" / "claims").glob("*.claim"))
    log = (config.parent / "agent.log").read_text()
    assert f"job {job_id} lease {held_lease} released (agent stopping): requeued" in log

    with running_agent(env, config):
        done = env.wait_job(job_id, timeout=120)
    assert done[0] == "completed", done
    assert _job(env, job_id)[3] == 2
    _check_results(env, job_id, listeners.ports)


def test_sigkill_mid_job_is_released_at_the_next_start(env: IngestEnv, listeners: AcceptAll) -> None:
    scanner_id, config, job_id = _start_mid_job(env, "crasher", listeners.ports)
    with running_agent(env, config) as agent:
        wait_until(lambda: _ledger(env, job_id) >= 2, 60, "the first batches", interval=0.1)
        held_lease = _job(env, job_id)[2]
        agent.kill()
        agent.wait()
    # Nothing gives it back while the agent is down: the lease of 600 s holds the job.
    assert _job(env, job_id)[0] == "running"
    assert list((config.parent / "spool" / "claims").glob("*.claim"))

    with running_agent(env, config):
        wait_until(lambda: _released_events(env, job_id), 30, "the release at start",
                   detail=lambda: f"{_job(env, job_id)}; see {config.parent / 'agent.log'}")
        done = env.wait_job(job_id, timeout=120)
    assert done[0] == "completed", done
    assert _released_events(env, job_id) == [(scanner_id, "redispatch", "agent restarted", "requeued")]
    attempts = _attempts(env, job_id)
    assert attempts[0] == (1, scanner_id, held_lease, "requeued:released", True)
    assert [a[3] for a in attempts] == ["requeued:released", "completed"]
    assert not list((config.parent / "spool" / "claims").glob("*.claim"))
    _check_results(env, job_id, listeners.ports)


def _under_lease(env: IngestEnv, job_id: int, lease: int) -> set[int]:
    """The batch numbers the ledger holds for the job under this lease."""
    return {int(r[0]) for r in env.query("results", "SELECT batch_seq FROM ingested_batches"
                                                    " WHERE job_id = %s AND lease_token = %s", (job_id, lease))}


def test_after_a_crash_spooled_batches_are_sent_before_the_release(env: IngestEnv, listeners: AcceptAll) -> None:
    """Batches spooled while ingest was down are sent under the old lease at start, and only then is the
    lease released (after the release they would be refused as stale)."""
    _scanner_id, config, job_id = _start_mid_job(env, "spooler", listeners.ports)
    spool = config.parent / "spool"
    with running_agent(env, config) as agent:
        wait_until(lambda: _ledger(env, job_id) >= 1, 60, "the first batch", interval=0.1)
        env.process.kill()
        wait_until(lambda: len(list(spool.glob("*.json"))) >= 3, 60, "batches spooled while ingest is down",
                   interval=0.1)
        agent.kill()
        agent.wait()
    held_lease = _job(env, job_id)[2]
    sent_before = _under_lease(env, job_id, held_lease)
    files = sorted(spool.glob("*.json"))
    spooled = len(files)
    # A batch ingest committed just before its SIGKILL was never acknowledged: it is spooled and in the ledger
    # both, and sent again it is stored once. What counts: every spooled batch is in the ledger after the start.
    spooled_seqs = {int(f.stem.split("-")[2]) for f in files}
    env.process.start()
    with running_agent(env, config):
        wait_until(lambda: _released_events(env, job_id), 30, "the release at start",
                   detail=lambda: f"{_job(env, job_id)}; see {config.parent / 'agent.log'}")
        assert _under_lease(env, job_id, held_lease) == sent_before | spooled_seqs
        done = env.wait_job(job_id, timeout=120)
    assert done[0] == "completed", done
    log = (config.parent / "agent.log").read_text()
    assert f"job {job_id} lease {held_lease}: sending {spooled} spooled batch(es) before giving it back" in log
    _check_results(env, job_id, listeners.ports)


def _post(env: IngestEnv, key: str, path: str, body: Any) -> httpx.Response:
    return httpx.post(env.url + path, headers={"X-Mipo-Key": key}, json=body, timeout=30)


def _claim(env: IngestEnv, key: str) -> dict[str, Any]:
    answer = _post(env, key, "/scanner/v1/claim", {"max_jobs": 1, "wait": 5})
    assert answer.status_code == 200, answer.text
    jobs = answer.json()["jobs"]
    assert len(jobs) == 1, answer.json()
    return dict(jobs[0])


def test_release_refuses_stale_leases_and_malformed_bodies(env: IngestEnv) -> None:
    owner, key = env.enrolled_key()
    _other, other_key = env.enrolled_key()
    _run, job_id = env.new_job(owner, [["198.18.0.1", "198.18.0.9"]], "1-10", cost=90)
    job = _claim(env, key)
    lease = job["lease_token"]
    body = {"job_id": job_id, "lease_token": lease, "reason": "agent stopping"}

    for who, sent in ((other_key, body), (key, {**body, "lease_token": lease + 1}),
                      (key, {**body, "job_id": job_id + 1000})):
        refused = _post(env, who, "/scanner/v1/release", sent)
        assert (refused.status_code, refused.json()["reason"]) == (409, "stale_lease"), refused.text
    for sent, field in (({"job_id": job_id, "lease_token": lease}, "reason"),
                        ({**body, "reason": "x" * 201}, "reason"),
                        ({**body, "reason": "bad\nline"}, "reason"),
                        ({**body, "lease_token": 0}, "lease_token"),
                        ({**body, "extra": 1}, "extra")):
        refused = _post(env, key, "/scanner/v1/release", sent)
        assert refused.status_code == 422, refused.text
        assert (refused.json()["reason"], refused.json()["field"]) == ("malformed", field)
    assert _job(env, job_id)[:3] == ("running", owner, lease)
    assert _released_events(env, job_id) == []

    released = _post(env, key, "/scanner/v1/release", body)
    assert released.status_code == 200, released.text
    assert released.json() == {"released": True, "action": "requeued"}
    assert _job(env, job_id)[:3] == ("pending", owner, lease + 1)
    again = _post(env, key, "/scanner/v1/release", body)   # a resend: the agent just stops trying
    assert (again.status_code, again.json()["reason"]) == (409, "stale_lease")
    assert _released_events(env, job_id) == [(owner, "redispatch", "agent stopping", "requeued")]

    # Its last attempt: released means failed, as a lease that expires on its last attempt.
    env.query("jobs", "UPDATE jobs SET max_attempts = 2 WHERE id = %s", (job_id,))
    job = _claim(env, key)
    last = _post(env, key, "/scanner/v1/release", {**body, "lease_token": job["lease_token"]})
    assert last.json() == {"released": True, "action": "failed"}
    assert env.query("jobs", "SELECT status, error_class FROM jobs WHERE id = %s", (job_id,)) == [
        ("failed", "lease_expired")]
    assert [a[3] for a in _attempts(env, job_id)] == ["requeued:released", "failed:lease_expired"]
    assert _released_events(env, job_id)[-1] == (owner, "fail", "agent stopping", "failed")

