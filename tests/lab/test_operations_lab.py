"""Operations in the deployed lab, as a person would do them through the admin API over the edge.

- A schedule every minute on a template over part of the lab's external network, scanned by a mirror group
  of scanner-a and scanner-b: the dispatcher creates the run from the schedule (no "run now"), each scanner
  gets its job, and results arrive from both.
- The 8080 service of `target` stopped → the next run's changes show 8080 closed from both scanners; started
  again → opened from both; scanner-b's traffic to 8080 dropped on `target` → the run's cross-vantage view
  shows 8080 open from scanner-a only.

Every object is created through the API and deleted at the end; `target` is always restored.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest

from appliance.lab.topology import TARGET_HTTP_UNIT
from tests.lab.appliance_support import (
    Appliance,
    _wait_agent_settled,
    get_json,
    run_now,
    wait_run_finished,
)
from tests.support.waiting import wait_until

pytestmark = pytest.mark.lab

TARGET = "198.18.0.30"
SCHEDULED_SUBNET = "198.18.0.24/29"   # target plus seven quiet addresses of the external network
PORTS = (22, 443, 8080)
NFT_TABLE = "mipo_opslab"
ONLINE_WITHIN = 180.0   # a scanner restarted by another test is back within a heartbeat or two
RUN_WITHIN = 150.0      # planned within a dispatcher tick, 3 ports x a few addresses scanned, then finalised


@dataclass
class Objects:
    """Configuration objects created through the API, deleted in reverse order at the end."""

    app: Appliance
    created: list[str] = field(default_factory=list)

    def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        answer = self.app.api.post(path, json=body)
        assert answer.status_code == 201, f"POST {path}: {answer.status_code} {answer.text}"
        made = dict(answer.json())
        self.created.append(f"{path}/{made['id']}")
        return made

    def delete_all(self) -> None:
        failed = []
        for url in reversed(self.created):
            answer = self.app.api.delete(url)
            if answer.status_code not in (204, 404):
                failed.append(f"DELETE {url}: {answer.status_code} {answer.text}")
        self.created.clear()
        assert not failed, failed


@dataclass
class Mirror:
    objects: Objects
    group_id: int
    port_list_id: int
    template_id: int


def _get(app: Appliance, url: str, **params: Any) -> Any:
    return get_json(app.api, url, **params)


def _wait_online(app: Appliance, scanners: dict[str, int]) -> None:
    """Both scanners online, and an agent another test restarted past the stale-claim window."""
    for host, scanner_id in scanners.items():
        wait_until(lambda: app.scanner(scanner_id)["online"], ONLINE_WITHIN, f"{host} online",  # noqa: B023 (used at once)
                   interval=1)
        _wait_agent_settled(app, host)


def _jobs(app: Appliance, run_id: int) -> list[dict[str, Any]]:
    return list(_get(app, f"/api/runs/{run_id}/jobs"))


def _open_ports(app: Appliance, run_id: int) -> set[tuple[int, str, int]]:
    """(scanner, address, port) found open in the run, from the results API (all pages)."""
    found: set[tuple[int, str, int]] = set()
    params: dict[str, Any] = {"run_id": run_id, "limit": 1000}
    while True:
        page = _get(app, "/api/results", **params)
        found |= {(o["scanner_id"], o["ip"], o["port"]) for o in page["items"] if o["state"] == "open"}
        if page["next"] is None:
            return found
        params.update(page["next"])


def _changes(app: Appliance, run_id: int, port: int) -> set[tuple[int, str, str]]:
    """(scanner, address, opened|closed) of the run at this port, from the changes API."""
    page = _get(app, "/api/changes", run_id=run_id, port=port)
    assert page["next_before_id"] is None
    return {(c["scanner_id"], c["ip"], c["change"]) for c in page["items"] if c["change"] in ("opened", "closed")}


def _target(app: Appliance, command: str, check: bool = True) -> None:
    out = app.lab.run("target", command, check=False)
    assert not check or out.returncode == 0, f"target: {command}: {out.stdout}{out.stderr}"


def _start_http(app: Appliance, check: bool = True) -> None:
    _target(app, f"systemctl start {TARGET_HTTP_UNIT} && timeout 30 sh -c "
                 "'until ss -Htln sport = :8080 | grep -q .; do sleep 0.2; done'", check=check)


@pytest.fixture(scope="module")
def mirror(appliance: Appliance, scanners: dict[str, int]) -> Iterator[Mirror]:
    """A mirror group of scanner-a and scanner-b, a port list 22,443,8080 and a template over `target` only."""
    _wait_online(appliance, scanners)
    tag = secrets.token_hex(3)
    objects = Objects(appliance)
    try:
        group = objects.create("/api/scanner-groups", {"name": f"ops-mirror-{tag}", "mode": "mirror",
                                                       "scanner_ids": [scanners["scanner-a"], scanners["scanner-b"]]})
        ports = objects.create("/api/port-lists", {"name": f"ops-ports-{tag}", "spec": ",".join(map(str, PORTS))})
        subnet = objects.create("/api/subnets", {"name": f"ops-target-{tag}", "cidr": TARGET})
        template = objects.create("/api/templates", {
            "name": f"ops-target-{tag}", "port_list_id": ports["id"], "scanner_group_id": group["id"],
            "subnet_ids": [subnet["id"]], "rate": 1000, "timeout_ms": 1000, "banner": True, "tls": True})
        yield Mirror(objects, group["id"], ports["id"], template["id"])
    finally:
        objects.delete_all()


def test_schedule_every_minute_runs_on_both_scanners_of_a_mirror_group(appliance: Appliance,
                                                                        scanners: dict[str, int],
                                                                        mirror: Mirror) -> None:
    _wait_online(appliance, scanners)
    tag = secrets.token_hex(3)
    subnet = mirror.objects.create("/api/subnets", {"name": f"ops-external-{tag}", "cidr": SCHEDULED_SUBNET})
    template = mirror.objects.create("/api/templates", {
        "name": f"ops-scheduled-{tag}", "port_list_id": mirror.port_list_id, "scanner_group_id": mirror.group_id,
        "subnet_ids": [subnet["id"]], "rate": 1000, "timeout_ms": 1000, "banner": True, "tls": True})
    assert _get(appliance, f"/api/templates/{template['id']}/preview")["probes"] == 8 * len(PORTS)
    schedule = mirror.objects.create("/api/schedules", {"name": f"ops-every-minute-{tag}",
                                                        "template_id": template["id"], "cron": "* * * * *"})
    try:
        assert schedule["enabled"] and schedule["next_run_at"] is not None
        runs: list[dict[str, Any]] = []

        def scheduled_run() -> bool:
            runs[:] = _get(appliance, "/api/runs", template_id=template["id"])
            return bool(runs)

        wait_until(scheduled_run, 60 + RUN_WITHIN / 2, "a run created by the every-minute schedule", interval=1)
    finally:
        # Stop the rhythm first: whatever happens next, the schedule does not keep scanning.
        disabled = appliance.api.patch(f"/api/schedules/{schedule['id']}", json={"enabled": False})
        assert disabled.status_code == 200, disabled.text
    run = runs[-1]  # newest first: the last is the first due time after the schedule was created
    assert run["schedule_id"] == schedule["id"] and run["run_request_id"] is None, run
    assert run["requested_by"] == f"schedule:{schedule['name']}" and run["mode"] == "mirror"
    due = datetime.fromisoformat(run["due_at"])
    assert (due.second, due.microsecond) == (0, 0), run["due_at"]  # a cron minute, not "now"
    fired = _get(appliance, f"/api/schedules/{schedule['id']}")
    assert fired["last_run_at"] is not None and datetime.fromisoformat(fired["next_run_at"]) > due, fired

    finished = wait_run_finished(appliance.api, run["id"], set(scanners.values()), RUN_WITHIN)
    assert finished["status"] == "completed", finished
    jobs = _jobs(appliance, run["id"])
    assert sorted(j["scanner_id"] for j in jobs) == sorted(scanners.values()), jobs
    assert {j["status"] for j in jobs} == {"completed"}
    assert all(j["targets"] == [["198.18.0.24", "198.18.0.31"]] for j in jobs), [j["targets"] for j in jobs]
    assert _open_ports(appliance, run["id"]) == {(sid, TARGET, port) for sid in scanners.values() for port in PORTS}


def test_stopped_service_is_closed_from_both_scanners_then_opened(appliance: Appliance, scanners: dict[str, int],
                                                                  mirror: Mirror) -> None:
    _wait_online(appliance, scanners)
    a, b = scanners["scanner-a"], scanners["scanner-b"]
    baseline = run_now(appliance.api, mirror.template_id, set(scanners.values()), RUN_WITHIN)
    assert {(s, TARGET, 8080) for s in (a, b)} <= _open_ports(appliance, baseline)
    try:
        _target(appliance, f"systemctl stop {TARGET_HTTP_UNIT}")
        stopped = run_now(appliance.api, mirror.template_id, set(scanners.values()), RUN_WITHIN)
        assert _changes(appliance, stopped, 8080) == {(a, TARGET, "closed"), (b, TARGET, "closed")}
        assert {(s, TARGET, p) for s in (a, b) for p in (22, 443)} == _open_ports(appliance, stopped)
    finally:
        _start_http(appliance, check=False)
    started = run_now(appliance.api, mirror.template_id, set(scanners.values()), RUN_WITHIN)
    assert _changes(appliance, started, 8080) == {(a, TARGET, "opened"), (b, TARGET, "opened")}
    assert _changes(appliance, started, 22) == set()


def test_dropped_traffic_shows_8080_open_from_scanner_a_only(appliance: Appliance, scanners: dict[str, int],
                                                             mirror: Mirror) -> None:
    _wait_online(appliance, scanners)
    a, b = scanners["scanner-a"], scanners["scanner-b"]
    scanner_b = appliance.lab.host("scanner-b").addresses["external"]
    _start_http(appliance)  # whatever an earlier test left, the service runs
    baseline = run_now(appliance.api, mirror.template_id, set(scanners.values()), RUN_WITHIN)
    assert {(s, TARGET, 8080) for s in (a, b)} <= _open_ports(appliance, baseline)
    try:
        _target(appliance, f"nft add table inet {NFT_TABLE} && nft add chain inet {NFT_TABLE} in "
                           "'{ type filter hook input priority -10 ; }' && nft add rule inet "
                           f"{NFT_TABLE} in ip saddr {scanner_b} tcp dport 8080 drop")
        run_id = run_now(appliance.api, mirror.template_id, set(scanners.values()), RUN_WITHIN)
    finally:
        _target(appliance, f"nft delete table inet {NFT_TABLE}", check=False)
    differences = _get(appliance, f"/api/results/runs/{run_id}/cross-vantage")
    assert differences == [{"ip": TARGET, "port": 8080, "proto": "tcp", "open_from": [a], "closed_from": [b],
                            "not_covered_by": []}]
    assert _changes(appliance, run_id, 8080) == {(b, TARGET, "closed")}
