"""The scanner API's hot paths through a real ingest: a draining scanner takes no new job (also when it was
drained during its long poll), ingest's key cache never serves a revoked key past its bound, and heartbeats
and claims work again after the database restarts."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.test_scanner_support import IngestEnv, ingest_env
from tests.support.postgres import PostgresServer, running_postgres

TARGETS = [["198.18.0.1", "198.18.0.1"]]


@pytest.fixture(scope="module")
def env(pg: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[IngestEnv]:
    with ingest_env(pg, tmp_path_factory.mktemp("hot")) as e:
        yield e


def _bound(env: IngestEnv) -> float:
    """How long a change may take to reach ingest's key cache at worst (its setting), plus request slack."""
    return env.owner.scanner.auth_cache_seconds + 1.0


def _post(env: IngestEnv, key: str, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(env.url + path, json=body, headers={"X-Mipo-Key": key}, timeout=30)


def _claim(env: IngestEnv, key: str, wait: float = 0) -> list[dict[str, Any]]:
    answer = _post(env, key, "/scanner/v1/claim", {"max_jobs": 4, "wait": wait})
    assert answer.status_code == 200, answer.text
    jobs: list[dict[str, Any]] = answer.json()["jobs"]
    return jobs


def _status(env: IngestEnv, job_id: int) -> str:
    return str(env.query("jobs", "SELECT status FROM jobs WHERE id = %s", (job_id,))[0][0])


def _set_scanner(env: IngestEnv, scanner_id: int, status: str) -> None:
    """As the dispatcher's drain repair does it: a plain UPDATE of the config database."""
    env.query("config", "UPDATE scanners SET status = %s WHERE id = %s", (status, scanner_id))


def test_draining_scanner_claims_no_new_job(env: IngestEnv) -> None:
    """Drained: its claims answer no job and the pending job stays pending; active again, it gets the job."""
    scanner_id, key = env.enrolled_key()
    assert _claim(env, key) == []  # its key is now in ingest's cache, with status active
    _set_scanner(env, scanner_id, "draining")
    time.sleep(_bound(env))  # past the cache's bound: from here on, ingest must know
    _, job_id = env.new_job(scanner_id, TARGETS, "80")
    assert _claim(env, key) == []
    assert _claim(env, key, wait=1.0) == []
    assert _status(env, job_id) == "pending"
    _set_scanner(env, scanner_id, "active")
    time.sleep(_bound(env))
    assert [j["job_id"] for j in _claim(env, key)] == [job_id]
    assert _status(env, job_id) == "running"


def test_scanner_drained_during_its_long_poll_gets_nothing(env: IngestEnv) -> None:
    """The long poll began while the scanner was active; a job announced after the drain is not handed out."""
    scanner_id, key = env.enrolled_key()
    answer: dict[str, Any] = {}
    poll = threading.Thread(target=lambda: answer.update(jobs=_claim(env, key, wait=5.0)))
    poll.start()
    time.sleep(0.3)  # parked in its long poll
    _set_scanner(env, scanner_id, "draining")
    time.sleep(_bound(env))
    _, job_id = env.new_job(scanner_id, TARGETS, "80")  # pending + NOTIFY wakes the poll
    poll.join()
    assert answer["jobs"] == []
    assert _status(env, job_id) == "pending"


def test_long_poll_of_a_client_that_went_away_takes_no_job(env: IngestEnv) -> None:
    """An agent stopped while parked in its long poll: the job announced afterwards stays pending for the
    agent's next claim instead of being leased to a closed connection (and waiting out a whole lease)."""
    scanner_id, key = env.enrolled_key()
    with pytest.raises(httpx.ReadTimeout):  # the client gives up after 1 s of a 5 s poll, as a stopped agent does
        httpx.post(env.url + "/scanner/v1/claim", json={"max_jobs": 1, "wait": 5.0}, headers={"X-Mipo-Key": key},
                   timeout=1.0)
    time.sleep(0.5)
    _, job_id = env.new_job(scanner_id, TARGETS, "80")  # pending + NOTIFY: would wake the abandoned poll
    time.sleep(1.0)
    assert _status(env, job_id) == "pending"
    assert [j["job_id"] for j in _claim(env, key)] == [job_id]


def test_revoked_key_is_refused_within_the_cache_bound(env: IngestEnv) -> None:
    """A revoked key stops working within `auth_cache_seconds` — announced by the database, and also while
    ingest's listening connection is gone (then every request reads the database)."""
    for drop_listener in (False, True):
        scanner_id, key = env.enrolled_key()
        assert _post(env, key, "/scanner/v1/heartbeat", {}).status_code == 200  # cached
        if drop_listener:
            env.query("config", "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                      " WHERE datname = current_database() AND query = 'LISTEN mipo_scanner_auth'")
        env.query("config", "UPDATE scanner_keys SET revoked_at = now() WHERE scanner_id = %s", (scanner_id,))
        deadline = time.monotonic() + _bound(env)
        reasons = []
        while time.monotonic() < deadline:
            answer = _post(env, key, "/scanner/v1/heartbeat", {})
            reasons.append(answer.json().get("reason") if answer.status_code != 200 else 200)
            if reasons[-1] == "revoked_key":
                break
            time.sleep(0.05)
        assert reasons[-1] == "revoked_key", (drop_listener, reasons)
        later = [_post(env, key, path, {}).json()["reason"] for path in ("/scanner/v1/heartbeat", "/scanner/v1/claim")]
        assert later == ["revoked_key", "revoked_key"]


@pytest.fixture(scope="module")
def own_pg() -> Iterator[PostgresServer]:
    """A server of its own: the restart test stops and starts it."""
    with running_postgres() as server:
        yield server


def test_heartbeats_and_claims_work_again_after_the_database_restarts(own_pg: PostgresServer, tmp_path: Path) -> None:
    """Pooled connections broken by the restart are replaced on checkout; the key cache reconnects; buffered
    heartbeats reach the database; during the outage the answer is a 503 problem, not a crash."""
    with ingest_env(own_pg, tmp_path) as env:
        scanner_id, key = env.enrolled_key()
        assert _post(env, key, "/scanner/v1/heartbeat", {}).status_code == 200
        own_pg.stop()
        try:
            down = _post(env, key, "/scanner/v1/claim", {"wait": 0})
            assert (down.status_code, down.json()["reason"]) == (503, "database_unavailable")
        finally:
            own_pg.start()
        deadline = time.monotonic() + 30
        while _post(env, key, "/scanner/v1/heartbeat", {}).status_code != 200:
            assert time.monotonic() < deadline, "heartbeats did not work again within 30 s"
            time.sleep(0.5)
        _, job_id = env.new_job(scanner_id, TARGETS, "80")
        assert [j["job_id"] for j in _claim(env, key)] == [job_id]
        assert httpx.get(env.url + "/health", timeout=10).status_code == 200
        while not env.query("config", "SELECT last_heartbeat_at > now() - interval '10 seconds' FROM scanners"
                            " WHERE id = %s", (scanner_id,))[0][0]:
            assert time.monotonic() < deadline, "the heartbeat was not written within 30 s"
            time.sleep(0.5)
