"""Results history through the admin API: cross-vantage, point in time, host history, changes filters, exports."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from datetime import timedelta

import psycopg
import pytest
from litestar.testing import TestClient

from app.db.connect import conninfo
from tests.conftest import SettingsFactory
from tests.support.manager import manager_client
from tests.support.results import T0, cover, detect, observe

A, B = 1, 2
NET = [["198.18.0.0", "198.18.0.255"]]


@pytest.fixture()
def world(migrated: SettingsFactory, owner_dsn: Callable[[str], str]) -> Iterator[tuple[str, TestClient]]:
    """A mirror history of two scanners over three runs, detected as the dispatcher would; and a viewer."""
    owner, dispatcher = owner_dsn("results"), conninfo(migrated("mipo_dispatcher"), "results")
    for scanner in (A, B):  # run 1: both see 22 and 8080 on .10
        observe(owner, 1, scanner, [("198.18.0.10", 22, "ssh", "SSH-2.0-a"), ("198.18.0.10", 8080, "http", "x")])
        cover(owner, 1, scanner, NET, "1-1024,8080")
    detect(dispatcher, 1)
    # run 2: 8080 dropped for B only (a firewall between B and the target); A sees it.
    observe(owner, 2, A, [("198.18.0.10", 22, "ssh", "SSH-2.0-a"), ("198.18.0.10", 8080, "http", "x")])
    observe(owner, 2, B, [("198.18.0.10", 22, "ssh", "SSH-2.0-a")])
    for scanner in (A, B):
        cover(owner, 2, scanner, NET, "1-1024,8080")
    detect(dispatcher, 2)
    # run 3: the 8080 service is stopped: closed from A too; 22's banner changes.
    for scanner in (A, B):
        observe(owner, 3, scanner, [("198.18.0.10", 22, "ssh", "SSH-2.0-b")])
        cover(owner, 3, scanner, NET, "1-1024,8080")
    detect(dispatcher, 3)
    with psycopg.connect(conninfo(migrated(), "jobs", as_owner=True)) as conn:
        for run in (1, 2, 3):
            conn.execute("INSERT INTO scan_runs (id, template_id, template_name, mode) OVERRIDING SYSTEM VALUE"
                         " VALUES (%s, 7, 'lab', 'mirror')", (run,))
    with manager_client(migrated(), role="viewer") as client:
        yield owner, client


def test_cross_vantage_shows_a_port_open_from_one_scanner_only(world: tuple[str, TestClient]) -> None:
    """Run 2: 8080 open from A, covered but not open from B — listed; 22 (both agree) is not."""
    _, api = world
    response = api.get("/api/results/runs/2/cross-vantage")
    assert response.status_code == 200, response.text
    assert response.json() == [{"ip": "198.18.0.10", "port": 8080, "proto": "tcp", "open_from": [A],
                                "closed_from": [B], "not_covered_by": []}]
    assert api.get("/api/results/runs/1/cross-vantage").json() == []


def test_cross_vantage_does_not_call_uncovered_space_closed(migrated: SettingsFactory,
                                                           owner_dsn: Callable[[str], str]) -> None:
    """A scanner whose job did not complete cannot disagree: it is listed as not covering, on request only."""
    owner = owner_dsn("results")
    observe(owner, 5, A, [("198.18.0.10", 443)])
    cover(owner, 5, A, NET, "443")
    cover(owner, 5, B, NET, "443", complete=False)
    with manager_client(migrated(), role="viewer") as api:
        assert api.get("/api/results/runs/5/cross-vantage").json() == []
        rows = api.get("/api/results/runs/5/cross-vantage", params={"include_uncovered": "true"}).json()
        assert [(r["port"], r["open_from"], r["closed_from"], r["not_covered_by"]) for r in rows] == [
            (443, [A], [], [B])]


def test_changes_are_listed_and_filtered(world: tuple[str, TestClient]) -> None:
    """The changes list answers 'what changed' by run, scanner, kind, port, subnet and template."""
    _, api = world
    everything = api.get("/api/changes").json()["items"]
    assert sorted((c["run_id"], c["scanner_id"], c["port"], c["change"]) for c in everything) == [
        (2, B, 8080, "closed"), (3, A, 22, "service_changed"), (3, A, 8080, "closed"),
        (3, B, 22, "service_changed")]
    assert [c["run_id"] for c in everything] == sorted((c["run_id"] for c in everything), reverse=True)
    only_a = api.get("/api/changes", params={"scanner_id": A, "change": "closed"}).json()["items"]
    assert [(c["run_id"], c["port"]) for c in only_a] == [(3, 8080)]
    assert len(api.get("/api/changes", params={"port": 22, "subnet": "198.18.0.0/28"}).json()["items"]) == 2
    assert api.get("/api/changes", params={"subnet": "198.18.1.0/24"}).json()["items"] == []
    assert len(api.get("/api/changes", params={"template_id": 7}).json()["items"]) == 4
    assert api.get("/api/changes", params={"template_id": 8}).json()["items"] == []
    page = api.get("/api/changes", params={"limit": 3}).json()
    rest = api.get("/api/changes", params={"before_id": page["next_before_id"]}).json()
    assert len(page["items"]) + len(rest["items"]) == 4 and rest["next_before_id"] is None


@pytest.mark.parametrize(("params", "field"), [
    ({"subnet": "198.18.0.0/33"}, "subnet"), ({"change": "vanished"}, "change"),
    ({"since": "2026-11-02T00:00:00Z", "until": "2026-11-01T00:00:00Z"}, "since"),
])
def test_bad_filters_are_refused_with_a_reason(world: tuple[str, TestClient], params: dict[str, str],
                                               field: str) -> None:
    _, api = world
    response = api.get("/api/changes", params=params)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["field"] == field


def test_point_in_time_is_the_latest_covered_state(world: tuple[str, TestClient]) -> None:
    """8080 from B: open after run 1, closed once run 2's complete coverage finished; from A until run 3."""
    _, api = world

    def open_at(hours: float, scanner: int) -> list[int]:
        at = (T0 + timedelta(hours=hours)).isoformat()
        rows = api.get("/api/results/point-in-time", params={"at": at, "scanner_id": scanner}).json()
        return sorted(r["port"] for r in rows)

    assert open_at(0.5, A) == []  # before anything was scanned
    assert open_at(1.6, B) == [22, 8080]  # after run 1
    assert open_at(2.6, B) == [22]  # after run 2's coverage of B
    assert open_at(2.6, A) == [22, 8080]
    assert open_at(3.6, A) == [22]  # after run 3
    at = (T0 + timedelta(hours=2.6)).isoformat()
    both = api.get("/api/results/point-in-time", params={"at": at}).json()
    assert sorted((r["scanner_id"], r["port"]) for r in both) == [(A, 22), (A, 8080), (B, 22)]


def test_host_history_tells_everything_known_about_an_address(world: tuple[str, TestClient]) -> None:
    _, api = world
    history = api.get("/api/hosts/198.18.0.10").json()
    assert history["ip"] == "198.18.0.10"
    ports = {(p["scanner_id"], p["port"]): p for p in history["ports"]}
    assert ports[(A, 8080)]["state"] == "closed" and ports[(A, 8080)]["observations"] == 2
    assert ports[(A, 22)]["state"] == "open" and ports[(A, 22)]["service"] == "ssh"
    assert len(history["changes"]) == 4
    assert len(history["observations"]) == 9
    unknown = api.get("/api/hosts/198.18.0.99")
    assert unknown.status_code == 404 and unknown.json()["reason"] == "unknown_host"
    assert api.get("/api/hosts/not-an-ip").status_code == 422


def test_results_and_run_summaries(world: tuple[str, TestClient]) -> None:
    _, api = world
    summaries = api.get("/api/results/runs", params={"run_id": 2}).json()
    assert [(s["scanner_id"], s["open_ports"], s["hosts_up"], s["changes"]) for s in summaries] == [
        (A, 2, 1, 0), (B, 1, 1, 1)]
    page = api.get("/api/results", params={"run_id": 2, "limit": 2}).json()
    assert [(o["port"], o["scanner_id"]) for o in page["items"]] == [(22, A), (22, B)]
    rest = api.get("/api/results", params={"run_id": 2, **page["next"]}).json()
    assert [(o["port"], o["scanner_id"]) for o in rest["items"]] == [(8080, A)]


def test_exports_in_csv_and_json(world: tuple[str, TestClient]) -> None:
    """Exports carry the same rows as the API, as CSV with a header and as a JSON array."""
    _, api = world
    response = api.get("/api/exports/results.csv", params={"run_id": 3})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [(r["scanner_id"], r["port"], r["banner"]) for r in rows] == [("1", "22", "SSH-2.0-b"),
                                                                         ("2", "22", "SSH-2.0-b")]
    data = json.loads(api.get("/api/exports/results.json", params={"scanner_id": A}).text)
    assert len(data) == 5 and {d["ip"] for d in data} == {"198.18.0.10"}
    changes = json.loads(api.get("/api/exports/changes.json").text)
    assert len(changes) == 4 and changes[0]["before"] is not None
    lines = api.get("/api/exports/changes.csv", params={"change": "closed"}).text.strip().splitlines()
    assert lines[0].startswith("id,detected_at,run_id") and len(lines) == 3
    assert json.loads(api.get("/api/exports/changes.json", params={"template_id": 99}).text) == []
