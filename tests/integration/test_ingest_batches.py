"""The ingest write path over HTTP: a batch and its ledger row commit together, so a resend is stored
once; fencing tokens refuse a superseded lease; malformed batches are refused whole."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.integration.test_scanner_support import IngestEnv, ingest_env
from tests.support.postgres import PostgresServer


@pytest.fixture(scope="module")
def env(pg: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[IngestEnv]:
    with ingest_env(pg, tmp_path_factory.mktemp("ingest")) as e:
        yield e


def _post(env: IngestEnv, key: str, path: str, body: Any) -> httpx.Response:
    kwargs: dict[str, Any] = {"content": body} if isinstance(body, bytes) else {"json": body}
    return httpx.post(env.url + path, headers={"X-Mipo-Key": key}, timeout=30, **kwargs)


def _claim(env: IngestEnv, key: str) -> dict[str, Any]:
    answer = _post(env, key, "/scanner/v1/claim", {"max_jobs": 1, "wait": 5})
    assert answer.status_code == 200, answer.text
    jobs = answer.json()["jobs"]
    assert len(jobs) == 1, answer.json()
    return jobs[0]


def _batch(job: dict[str, Any], seq: int, ports: range, lease: int | None = None) -> dict[str, Any]:
    return {"job_id": job["job_id"], "batch_seq": seq, "lease_token": lease or job["lease_token"],
            "scanned": 10, "results": [{"ip": "198.18.0.5", "port": p, "banner": "x"} for p in ports]}


def _stored(env: IngestEnv, job_id: int) -> int:
    return int(env.query("results", "SELECT count(*) FROM observations WHERE job_id = %s", (job_id,))[0][0])


@pytest.fixture()
def claimed(env: IngestEnv) -> tuple[str, dict[str, Any]]:
    scanner_id, key = env.enrolled_key()
    env.new_job(scanner_id, [["198.18.0.1", "198.18.0.9"]], "1-1024", cost=9 * 1024)
    return key, _claim(env, key)


def test_same_batch_twice_is_stored_once(env: IngestEnv, claimed: tuple[str, dict[str, Any]]) -> None:
    key, job = claimed
    first = _post(env, key, "/scanner/v1/batches", _batch(job, 0, range(1, 101)))
    assert first.json() == {"ok": True, "duplicate": False, "stored": 100}
    again = _post(env, key, "/scanner/v1/batches", _batch(job, 0, range(1, 101)))
    assert again.status_code == 200 and again.json() == {"ok": True, "duplicate": True, "stored": 0}
    assert _stored(env, job["job_id"]) == 100
    assert env.query("results", "SELECT count(*) FROM ingested_batches WHERE job_id = %s",
                     (job["job_id"],)) == [(1,)]


def test_batch_under_superseded_lease_is_refused_and_nothing_stored(
        env: IngestEnv, claimed: tuple[str, dict[str, Any]]) -> None:
    """The reconciler requeues an expired job; the next claim bumps the fencing token; the old one is dead."""
    key, old = claimed
    assert _post(env, key, "/scanner/v1/batches", _batch(old, 0, range(1, 11))).status_code == 200
    env.query("jobs", "UPDATE jobs SET status = 'pending', lease_expires_at = NULL WHERE id = %s", (old["job_id"],))
    new = _claim(env, key)
    assert new["lease_token"] == old["lease_token"] + 1
    assert new["first_batch_seq"] == 1  # numbering continues: (job_id, batch_seq) never collides across attempts
    late = _post(env, key, "/scanner/v1/batches", _batch(old, 1, range(11, 21)))
    assert (late.status_code, late.json()["reason"]) == (409, "stale_lease")
    for path, body in (("/scanner/v1/progress", {"job_id": old["job_id"], "lease_token": old["lease_token"]}),
                       ("/scanner/v1/complete", {"job_id": old["job_id"], "lease_token": old["lease_token"],
                                                 "status": "completed", "batches": 1})):
        refused = _post(env, key, path, body)
        assert (refused.status_code, refused.json()["reason"]) == (409, "stale_lease")
    assert _stored(env, old["job_id"]) == 10
    ok = _post(env, key, "/scanner/v1/batches", _batch(new, 1, range(11, 21)))
    assert ok.json()["stored"] == 10
    done = _post(env, key, "/scanner/v1/complete", {"job_id": new["job_id"], "lease_token": new["lease_token"],
                                                    "status": "completed", "batches": 1})
    assert done.status_code == 200, done.text
    assert env.query("jobs", "SELECT status, done_cost FROM jobs WHERE id = %s", (new["job_id"],)) == \
        [("completed", 9 * 1024)]
    assert env.query("results", "SELECT complete FROM run_coverage WHERE job_id = %s", (new["job_id"],)) == [(True,)]


def test_another_scanners_key_cannot_use_the_lease(env: IngestEnv, claimed: tuple[str, dict[str, Any]]) -> None:
    _key, job = claimed
    _other_id, other_key = env.enrolled_key()
    refused = _post(env, other_key, "/scanner/v1/batches", _batch(job, 0, range(1, 5)))
    assert (refused.status_code, refused.json()["reason"]) == (409, "stale_lease")
    assert _stored(env, job["job_id"]) == 0


@pytest.mark.parametrize("mutate", [
    lambda b: b"{not json",
    lambda b: {**b, "results": [{"ip": "198.18.0.5", "port": 70000}]},
    lambda b: {**b, "results": [{"ip": "not-an-ip", "port": 22}]},
    lambda b: {**b, "results": [{"ip": "198.18.0.200", "port": 22}]},      # outside the job's targets
    lambda b: {**b, "results": [{"ip": "198.18.0.5", "port": 8080}]},      # outside the job's ports
    lambda b: {**b, "results": [{"ip": "198.18.0.5", "port": 22, "extra": 1}]},
    lambda b: {k: v for k, v in b.items() if k != "lease_token"},
], ids=["not-json", "bad-port", "bad-ip", "target-outside-job", "port-outside-job", "unknown-field", "no-lease"])
def test_malformed_batch_is_refused_whole_with_422(env: IngestEnv, claimed: tuple[str, dict[str, Any]],
                                                   mutate: Any) -> None:
    key, job = claimed
    body = mutate(_batch(job, 0, range(1, 3)))
    refused = _post(env, key, "/scanner/v1/batches", body)
    assert (refused.status_code, refused.json()["reason"]) == (422, "malformed")
    assert _stored(env, job["job_id"]) == 0
    assert env.query("results", "SELECT count(*) FROM ingested_batches WHERE job_id = %s", (job["job_id"],)) == [(0,)]


def test_complete_with_missing_batches_is_refused_and_failed_job_claims_no_coverage(
        env: IngestEnv, claimed: tuple[str, dict[str, Any]]) -> None:
    key, job = claimed
    short = _post(env, key, "/scanner/v1/complete", {"job_id": job["job_id"], "lease_token": job["lease_token"],
                                                     "status": "completed", "batches": 3})
    assert (short.status_code, short.json()["reason"]) == (409, "batches_missing")
    failed = _post(env, key, "/scanner/v1/complete", {"job_id": job["job_id"], "lease_token": job["lease_token"],
                                                      "status": "failed", "error_class": "scanner_error",
                                                      "error": "boom"})
    assert failed.status_code == 200
    assert env.query("jobs", "SELECT status, error_class FROM jobs WHERE id = %s", (job["job_id"],)) == \
        [("failed", "scanner_error")]
    assert env.query("results", "SELECT complete FROM run_coverage WHERE job_id = %s", (job["job_id"],)) == [(False,)]


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/scanner/v1/progress", b"{not json", "body"),
    ("/scanner/v1/progress", {"job_id": "seven", "lease_token": 1}, "job_id"),
    ("/scanner/v1/progress", {"job_id": 1}, "lease_token"),
    ("/scanner/v1/progress", {"job_id": 1, "lease_token": 1, "scanned": -5}, "scanned"),
    ("/scanner/v1/complete", {"job_id": 1, "lease_token": 1, "status": "done"}, "status"),
    ("/scanner/v1/complete", {"job_id": 1, "lease_token": 1, "status": "failed", "error_class": "Bad Class"},
     "error_class"),
    ("/scanner/v1/complete", [1, 2], "body"),
    ("/scanner/v1/heartbeat", {"version": "t", "running_jobs": -1}, "running_jobs"),
    ("/scanner/v1/heartbeat", {"version": "t", "cpu": 3}, "cpu"),
    ("/scanner/v1/claim", {"max_jobs": 0}, "max_jobs"),
    ("/scanner/v1/claim", {"wait": "forever"}, "wait"),
    ("/scanner/v1/claim", b"", "body"),
    ("/scanner/v1/enrol", {"token": "mipoenrol_x"}, "host_id"),
    ("/scanner/v1/batches", {"job_id": 1, "batch_seq": 0, "lease_token": 1,
                             "results": [{"ip": "198.18.0.5", "port": 70000}]}, "results[0].port"),
], ids=["progress-not-json", "progress-type", "progress-missing", "progress-negative", "complete-status",
        "complete-error-class", "complete-array", "heartbeat-negative", "heartbeat-unknown", "claim-range",
        "claim-type", "claim-empty", "enrol-missing", "batch-nested"])
def test_every_malformed_scanner_body_is_a_422_problem_naming_the_field(
        env: IngestEnv, claimed: tuple[str, dict[str, Any]], path: str, body: Any, field: str) -> None:
    """One kind of refusal across the scanner API: 422 `malformed`, the field in `field` and in the detail."""
    key, job = claimed
    refused = _post(env, key, path, body)
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    problem = refused.json()
    assert (problem["reason"], problem["field"]) == ("malformed", field)
    assert field in problem["detail"]
    assert env.query("jobs", "SELECT status, done_cost FROM jobs WHERE id = %s", (job["job_id"],)) == [("running", 0)]
