"""Heartbeat and claim are answered in front of Litestar (ScannerFront): through a real ingest, the calls the
front takes and the ones it hands to Litestar keep the scanner API's contract — POST only (405),
oversized bodies refused (413), refusals as problem documents with their reason, the client address taken from
a trusted proxy's X-Forwarded-For (and an acceptance remembered for one address never reused for another)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.integration.test_scanner_support import IngestEnv, ingest_env
from tests.support.postgres import PostgresServer
from tests.support.waiting import wait_until

HEARTBEAT = "/scanner/v1/heartbeat"
BEAT = {"version": "0.1.0", "load": 0.5, "running_jobs": 0}


@pytest.fixture(scope="module")
def env(pg: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[IngestEnv]:
    with ingest_env(pg, tmp_path_factory.mktemp("front")) as e:
        # Loopback plays Traefik: its X-Forwarded-For is believed (the [ingest] table is the config's last one).
        e.process.stop()
        e.process.config.write_text(e.process.config.read_text() + 'trusted_proxies = ["127.0.0.1/32"]\n')
        e.process.start()
        yield e


def _post(env: IngestEnv, path: str, key: str | None, body: bytes, forwarded: str | None = None) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["X-Mipo-Key"] = key
    if forwarded is not None:
        headers["X-Forwarded-For"] = forwarded
    return httpx.post(env.url + path, content=body, headers=headers, timeout=30)


def _problem(answer: httpx.Response, status: int, reason: str) -> dict[str, object]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    problem: dict[str, object] = answer.json()
    assert (problem["status"], problem["reason"]) == (status, reason)
    return problem


def test_hot_paths_take_post_only(env: IngestEnv) -> None:
    _, key = env.enrolled_key()
    for method in ("GET", "PUT", "DELETE"):
        for path in (HEARTBEAT, "/scanner/v1/claim"):
            answer = httpx.request(method, env.url + path, headers={"X-Mipo-Key": key}, timeout=30)
            _problem(answer, 405, "http_error")


def test_answers_are_the_same_in_front_of_litestar_and_through_it(env: IngestEnv) -> None:
    """`/scanner/v1/heartbeat/` is not the front's exact path: Litestar routes it to the same call."""
    _, key = env.enrolled_key()
    body = httpx.Request("POST", "/", json=BEAT).content
    front, routed = _post(env, HEARTBEAT, key, body), _post(env, HEARTBEAT + "/", key, body)
    assert front.status_code == routed.status_code == 200
    assert front.headers["content-type"] == routed.headers["content-type"] == "application/json"
    a, b = front.json(), routed.json()
    assert a.pop("server_time") and b.pop("server_time")
    assert a == b
    assert set(a) == {"heartbeat_interval", "lease_seconds", "rate_limit", "concurrency", "min_version", "scope"}
    for path in (HEARTBEAT, HEARTBEAT + "/"):
        _problem(_post(env, path, key, b'{"load": "high"}'), 422, "malformed")
        _problem(_post(env, path, "mipo_0000000000000000_" + "A" * 43, body), 401, "unknown_key")


def test_oversized_and_malformed_bodies_are_problems(env: IngestEnv) -> None:
    _, key = env.enrolled_key()
    _problem(_post(env, HEARTBEAT, key, b'{"version": "' + b"x" * (70 * 1024) + b'"}'), 413, "http_error")
    problem = _problem(_post(env, HEARTBEAT, key, b'{"running_jobs": -1}'), 422, "malformed")
    assert problem["field"] == "running_jobs"
    problem = _problem(_post(env, "/scanner/v1/claim", key, b"not json"), 422, "malformed")
    assert problem["field"] == "body"
    # The key is checked first: a bad body from an unknown caller is refused for its key.
    _problem(_post(env, HEARTBEAT, None, b"not json"), 401, "unknown_key")


def test_client_address_comes_from_the_trusted_proxy_and_binds_the_key(env: IngestEnv) -> None:
    scanner_id, key = env.enrolled_key()
    env.query("config", "UPDATE scanners SET bound_network = '198.18.0.0/24' WHERE id = %s", (scanner_id,))
    body = httpx.Request("POST", "/", json=BEAT).content
    wait_until(lambda: _post(env, HEARTBEAT, key, body, "203.0.113.9, 198.18.0.7").status_code == 200, 10,
               "the binding reached ingest")
    # Accepted from 198.18.0.7 just now; the same key from elsewhere is still refused, every time.
    for forwarded in ("198.18.1.7", None, "198.18.1.7"):
        refused = _problem(_post(env, HEARTBEAT, key, body, forwarded), 403, "address_not_allowed")
        assert str(refused["detail"]).endswith("198.18.1.7" if forwarded else "127.0.0.1")
    assert _post(env, HEARTBEAT, key, body, "198.18.0.7").status_code == 200
    wait_until(lambda: env.query("config", "SELECT host(last_address) FROM scanners WHERE id = %s",
                                 (scanner_id,)) == [("198.18.0.7",)], 10, "last address 198.18.0.7 written")


def test_a_version_with_nul_is_refused_and_other_heartbeats_are_still_written(env: IngestEnv) -> None:
    """PostgreSQL text cannot hold NUL: one such beat in the shared buffer would fail every scanner's write."""
    _, key = env.enrolled_key()
    other_id, other_key = env.enrolled_key()
    problem = _problem(_post(env, HEARTBEAT, key, b'{"version": "0.1\\u0000"}'), 422, "malformed")
    assert problem["field"] == "version"
    body = httpx.Request("POST", "/", json=BEAT).content
    assert _post(env, HEARTBEAT, other_key, body).status_code == 200
    wait_until(lambda: env.query("config", "SELECT version FROM scanners WHERE id = %s", (other_id,))
               == [("0.1.0",)], 10, "the other scanner's version 0.1.0 written")
