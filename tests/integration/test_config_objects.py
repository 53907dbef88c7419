"""The orchestration admin API: configuration objects with validation, "in use" protection and audit; runs,
repairs and events — against the in-process manager and real databases."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import psycopg
from litestar.testing import TestClient

from app.config import Settings
from app.domain.repairs.executor import execute_repairs
from app.domain.runs.service import answer_run_requests
from tests.conftest import SettingsFactory
from tests.integration.test_dispatcher import run_async
from tests.support.manager import manager_api, manager_client  # noqa: F401


def _scanners(dsn: str, n: int = 2) -> list[int]:
    with psycopg.connect(dsn) as conn:
        return [conn.execute("INSERT INTO scanners (name, status, last_heartbeat_at) VALUES (%s, 'active', now())"
                             " RETURNING id", (f"scan-{i}",)).fetchone()[0] for i in range(n)]  # type: ignore[index]


def _world(api: TestClient, scanner_ids: list[int], mode: str = "split") -> dict[str, int]:
    """A template over two subnets (one through a group), a port list and a scanner group, via the API."""
    s1 = api.post("/api/subnets", json={"name": "lab-a", "cidr": "198.18.0.0/25"}).json()["id"]
    s2 = api.post("/api/subnets", json={"name": "lab-b", "cidr": "198.18.0.77/26"}).json()["id"]
    grp = api.post("/api/subnet-groups", json={"name": "lab", "subnet_ids": [s2]}).json()["id"]
    ports = api.post("/api/port-lists", json={"name": "web", "spec": "80, 443/tcp, 8000-8010"}).json()["id"]
    sg = api.post("/api/scanner-groups", json={"name": "vp", "mode": mode, "scanner_ids": scanner_ids}).json()["id"]
    tpl = api.post("/api/templates", json={"name": "lab-web", "port_list_id": ports, "scanner_group_id": sg,
                                           "subnet_ids": [s1], "subnet_group_ids": [grp], "rate": 1000})
    assert tpl.status_code == 201, tpl.text
    return {"s1": s1, "s2": s2, "group": grp, "ports": ports, "sg": sg, "template": tpl.json()["id"]}


def test_subnet_crud_normalises_cidrs_and_refuses_bad_input(manager_api: TestClient) -> None:  # noqa: F811
    created = manager_api.post("/api/subnets", json={"name": "one", "cidr": "198.18.0.7/24"})
    assert created.status_code == 201
    assert created.json()["cidr"] == "198.18.0.0/24" and created.json()["addresses"] == 256
    single = manager_api.post("/api/subnets", json={"name": "host", "cidr": "2001:db8::1"}).json()
    assert single["cidr"] == "2001:db8::1/128"
    bad = manager_api.post("/api/subnets", json={"name": "bad", "cidr": "198.18.0.0/33"})
    assert bad.status_code == 422 and bad.json()["reason"] == "invalid_cidr" and bad.json()["field"] == "cidr"
    dup = manager_api.post("/api/subnets", json={"name": "one", "cidr": "198.18.1.0/24"})
    assert dup.status_code == 409 and dup.json()["reason"] == "duplicate"
    sid = created.json()["id"]
    assert manager_api.patch(f"/api/subnets/{sid}", json={"description": "lab"}).json()["description"] == "lab"
    assert manager_api.delete(f"/api/subnets/{sid}").status_code == 204
    assert manager_api.get(f"/api/subnets/{sid}").status_code == 404
    actions = [(r["action"], r["object_type"]) for r in manager_api.get("/api/audit").json()]
    assert actions[:4] == [("delete", "subnet"), ("update", "subnet"), ("create", "subnet"), ("create", "subnet")]


def test_objects_in_use_cannot_be_deleted(manager_api: TestClient, owner_dsn: Callable[[str], str]) -> None:  # noqa: F811
    """Each refusal names what uses the object; nothing is deleted."""
    w = _world(manager_api, _scanners(owner_dsn("config")))
    sched = manager_api.post("/api/schedules", json={"name": "hourly", "template_id": w["template"],
                                                    "cron": "@hourly"})
    assert sched.status_code == 201
    for path, who in ((f"/api/subnets/{w['s1']}", "lab-web"), (f"/api/subnets/{w['s2']}", "subnet group lab"),
                      (f"/api/subnet-groups/{w['group']}", "lab-web"), (f"/api/port-lists/{w['ports']}", "lab-web"),
                      (f"/api/scanner-groups/{w['sg']}", "lab-web"), (f"/api/templates/{w['template']}", "hourly")):
        refused = manager_api.delete(path)
        assert refused.status_code == 409, path
        assert refused.json()["reason"] == "in_use" and who in refused.json()["detail"], refused.json()
    builtin = next(p for p in manager_api.get("/api/port-lists").json() if p["name"] == "top-100")
    assert builtin["builtin"] and builtin["port_count"] == 100
    assert manager_api.delete(f"/api/port-lists/{builtin['id']}").json()["reason"] == "builtin"
    assert manager_api.patch(f"/api/port-lists/{builtin['id']}", json={"spec": "22"}).json()["reason"] == "builtin"
    # Once the schedule is gone, the template can go, and then everything it used.
    assert manager_api.delete(f"/api/schedules/{sched.json()['id']}").status_code == 204
    assert manager_api.delete(f"/api/templates/{w['template']}").status_code == 204
    assert manager_api.delete(f"/api/subnet-groups/{w['group']}").status_code == 204
    assert manager_api.delete(f"/api/subnets/{w['s2']}").status_code == 204


def test_port_lists_and_schedules_are_validated_with_reasons(manager_api: TestClient,  # noqa: F811
                                                             owner_dsn: Callable[[str], str]) -> None:
    bad = manager_api.post("/api/port-lists", json={"name": "x", "spec": "22,70000"})
    assert bad.status_code == 422 and bad.json()["reason"] == "invalid_ports" and "70000" in bad.json()["detail"]
    ok = manager_api.post("/api/port-lists", json={"name": "x", "spec": "ssh, 8000-8002, top-100"}).json()
    assert ok["port_count"] == 102  # 22 and 8000 are in top-100 already and ok["compact"].startswith("7,9,13,21-23")
    w = _world(manager_api, _scanners(owner_dsn("config")))
    for body, reason in (({"cron": "61 * * * *"}, "invalid_cron"), ({"cron": "@hourly", "timezone": "Nowhere/X"},
                         "invalid_timezone"), ({"cron": "0 0 31 2 *"}, "invalid_cron")):
        r = manager_api.post("/api/schedules", json={"name": "s", "template_id": w["template"], **body})
        assert r.status_code == 422 and r.json()["reason"] == reason, r.json()
    s = manager_api.post("/api/schedules", json={"name": "s", "template_id": w["template"], "cron": "30 2 * * *",
                                                "timezone": "Europe/Berlin", "jitter_seconds": 120}).json()
    due = datetime.fromisoformat(s["next_run_at"])
    assert due > datetime.now(UTC) and (due.hour, due.minute) in ((0, 30), (1, 30))
    missing = manager_api.post("/api/schedules", json={"name": "t", "template_id": 999, "cron": "@daily"})
    assert missing.status_code == 422 and missing.json()["field"] == "template_id"


def test_template_preview_counts_targets_minus_exclusions_without_listing_them(
        manager_api: TestClient, owner_dsn: Callable[[str], str]) -> None:  # noqa: F811
    w = _world(manager_api, _scanners(owner_dsn("config")))
    assert manager_api.post("/api/exclusions", json={"cidr": "198.18.0.0/30", "reason": "router"}).status_code == 201
    assert manager_api.post("/api/exclusions", json={"cidr": "198.18.0.64", "template_id": w["template"]}
                            ).status_code == 201
    preview = manager_api.get(f"/api/templates/{w['template']}/preview").json()
    # 198.18.0.0/25 and .64/26 overlap: 128 addresses, minus 4 and 1.
    assert preview == {"addresses": 123, "ports": 13, "probes": 123 * 13, "ranges": 2, "excluded_addresses": 5}


def test_run_now_and_repairs_go_through_the_dispatcher(migrated: SettingsFactory,
                                                      owner_dsn: Callable[[str], str]) -> None:
    """The manager queues; the dispatcher (its own DB role) creates the run and carries out repairs."""
    settings = migrated()
    dispatcher: Settings = migrated("mipo_dispatcher")
    scanners = _scanners(owner_dsn("config"))
    with manager_client(settings, role="operator") as api:
        w = _world(api, scanners, mode="mirror")
        req = api.post("/api/runs", json={"template_id": w["template"]})
        assert req.status_code == 202 and req.json()["run_id"] is None
        run_async(dispatcher, lambda c, j: answer_run_requests(c, j, dispatcher))
        run_id = api.get(f"/api/run-requests/{req.json()['id']}").json()["run_id"]
        run = api.get(f"/api/runs/{run_id}").json()
        assert run["status"] == "running" and run["mode"] == "mirror" and run["jobs"] == {"pending": 2}
        jobs = api.get(f"/api/runs/{run_id}/jobs").json()
        assert sorted(j["scanner_id"] for j in jobs) == sorted(scanners)
        assert jobs[0]["ports"] == "80,443,8000-8010"
        moved = api.post(f"/api/jobs/{jobs[0]['id']}/reassign")
        assert moved.status_code == 409 and moved.json()["reason"] == "mirror_job"
        failed = api.post(f"/api/jobs/{jobs[0]['id']}/fail")
        assert failed.status_code == 202
        drain = api.post(f"/api/scanners/{scanners[1]}/drain")
        assert drain.status_code == 202
        run_async(dispatcher, lambda c, j: execute_repairs(c, j, dispatcher))
        assert api.get(f"/api/jobs/{jobs[0]['id']}").json()["status"] == "failed"
        assert [r["outcome"][:5] for r in api.get("/api/repairs").json()] == ["done:", "done:"]
        assert {e["action"] for e in api.get("/api/events", params={"class": "repair"}).json()} == {"fail", "drain"}
        event_id = api.get("/api/events").json()[0]["id"]
        assert api.post(f"/api/events/{event_id}/acknowledge").status_code == 200
    with manager_client(settings, role="viewer") as viewer:
        assert viewer.get("/api/runs").status_code == 200
        assert viewer.post("/api/runs", json={"template_id": w["template"]}).status_code == 403
        assert viewer.post("/api/subnets", json={"name": "v", "cidr": "198.18.9.0/24"}).status_code == 403


def test_hostile_input_gets_a_problem_document_never_a_server_error(manager_api: TestClient) -> None:  # noqa: F811
    """Wrong types, huge ids, NUL bytes, unknown fields: each refused with a reason, no 5xx."""
    huge = 2**70
    cases = [
        ("post", "/api/subnets", {"name": "a", "cidr": "198.18.0.0/24", "description": "x\x00y"}),
        ("post", "/api/subnets", {"name": "a\x00", "cidr": "198.18.0.0/24"}),
        ("post", "/api/subnets", {"name": "a", "cidr": "198.18.0.0/24", "extra": 1}),
        ("post", "/api/subnets", {"name": "a", "cidr": "\x00"}),
        ("post", "/api/exclusions", {"cidr": "198.18.0.0/24", "template_id": huge}),
        ("post", "/api/exclusions", {"cidr": "198.18.0.0/24", "template_id": 424242}),
        ("post", "/api/port-lists", {"name": "p", "spec": "1-65535," * 2000}),
        ("post", "/api/port-lists", {"name": "p", "spec": "22/udp"}),
        ("post", "/api/templates", {"name": "t", "port_list_id": 1, "scanner_group_id": 9999}),
        ("post", "/api/templates", {"name": "t", "port_list_id": 1, "scanner_group_id": 1, "rate": 0}),
        ("post", "/api/scanner-groups", {"name": "g", "mode": "broadcast"}),
        ("post", "/api/scanner-groups", {"name": "g", "mode": "split", "scanner_ids": [123456]}),
        ("post", "/api/schedules", {"name": "s", "template_id": 1, "cron": "* * * * *", "timezone": "../../etc"}),
        ("post", "/api/schedules", {"name": "s", "template_id": 1, "cron": "\x00 * * * *"}),
        ("post", "/api/runs", {"template_id": huge}),
        ("post", "/api/runs", {"template_id": 31337}),
        ("post", "/api/jobs/5/reassign", {"scanner_id": huge}),
        ("post", "/api/jobs/5/fail", None),
        ("post", "/api/scanners/777/drain", None),
        ("get", "/api/events?class=DROP%20TABLE", None),
        ("get", "/api/runs?status=bogus", None),
        ("patch", "/api/subnets/1", {"cidr": 7}),
        ("delete", "/api/schedules/99", None),
    ]
    for method, path, body in cases:
        response = getattr(manager_api, method)(path, **({"json": body} if body is not None else {}))
        assert 400 <= response.status_code < 500, (path, body, response.status_code, response.text)
        assert response.json().get("reason"), (path, response.text)


def test_updates_replace_memberships_and_recompute_the_schedule(manager_api: TestClient,  # noqa: F811
                                                                owner_dsn: Callable[[str], str]) -> None:
    scanners = _scanners(owner_dsn("config"), 3)
    w = _world(manager_api, scanners[:2])
    tpl = manager_api.patch(f"/api/templates/{w['template']}", json={"subnet_group_ids": [], "rate": 50}).json()
    assert tpl["subnet_ids"] == [w["s1"]] and tpl["subnet_group_ids"] == [] and tpl["rate"] == 50
    assert manager_api.get(f"/api/templates/{w['template']}/preview").json()["addresses"] == 128
    group = manager_api.patch(f"/api/scanner-groups/{w['sg']}", json={"scanner_ids": [scanners[2]],
                                                                      "mode": "mirror"}).json()
    assert group["scanner_ids"] == [scanners[2]] and group["mode"] == "mirror"
    sched = manager_api.post("/api/schedules", json={"name": "n", "template_id": w["template"],
                                                    "cron": "0 3 * * *", "timezone": "UTC"}).json()
    assert datetime.fromisoformat(sched["next_run_at"]).hour == 3
    moved = manager_api.patch(f"/api/schedules/{sched['id']}", json={"cron": "15 4 * * *"}).json()
    assert (datetime.fromisoformat(moved["next_run_at"]).hour, datetime.fromisoformat(moved["next_run_at"]).minute) \
        == (4, 15)
    assert manager_api.patch(f"/api/schedules/{sched['id']}", json={"enabled": False}).json()["enabled"] is False
    audit = [(r["action"], r["object_type"]) for r in manager_api.get("/api/audit", params={"limit": 5}).json()]
    assert ("update", "schedule") in audit
