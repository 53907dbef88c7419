"""GUI pages over HTTP: form login with its CSRF token, every page renders, errors sit next to their field."""

from __future__ import annotations

import re
from collections.abc import Callable

import psycopg
from litestar.routes import HTTPRoute
from litestar.testing import TestClient

from app.db.connect import conninfo
from app.roles.manager.app import create_app
from tests.conftest import SettingsFactory
from tests.support.manager import DEFAULT_PASSWORD, create_user

TOKEN = re.compile(r'name="(?:login_token|csrf_token)" value="([^"]+)"')


def gui_login(client: TestClient, username: str, password: str = DEFAULT_PASSWORD) -> str:
    """Log in through the form; returns the page's CSRF token."""
    form = client.get("/login")
    token = TOKEN.search(form.text)
    assert token, form.text
    response = client.post("/login", data={"login_token": token.group(1), "username": username,
                                           "password": password, "next": "/"})
    assert response.status_code == 200, response.text
    csrf = TOKEN.search(response.text)
    assert csrf
    return csrf.group(1)


def test_login_form_refuses_a_post_without_its_token(migrated: SettingsFactory) -> None:
    """Login CSRF: a cross-site form cannot log a victim into the attacker's account."""
    settings = migrated()
    name = create_user(settings, role="viewer")
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
        response = client.post("/login", data={"username": name, "password": DEFAULT_PASSWORD})
        assert response.status_code == 403 and "expired" in response.text
        assert client.get("/", follow_redirects=False).status_code == 303


def test_wrong_password_shows_an_error_and_anonymous_pages_redirect_to_login(migrated: SettingsFactory) -> None:
    settings = migrated()
    name = create_user(settings, role="viewer")
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
        redirect = client.get("/events", follow_redirects=False)
        assert redirect.status_code == 303 and redirect.headers["location"] == "/login?next=%2Fevents"
        token = TOKEN.search(client.get("/login").text)
        assert token
        response = client.post("/login", data={"login_token": token.group(1), "username": name, "password": "nope"})
        assert response.status_code == 401 and "Wrong username or password" in response.text


def test_every_page_renders_for_an_admin(migrated: SettingsFactory) -> None:
    """Each GET page in the route table answers 200 with HTML and the security headers."""
    settings = migrated()
    name = create_user(settings, role="admin")
    app = create_app(settings)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        gui_login(client, name)
        pages = [r.path for r in app.routes if isinstance(r, HTTPRoute) and "GET" in r.methods
                 and not r.path.startswith(("/api", "/static", "/health")) and "{" not in r.path
                 and r.path != "/login"]
        assert "/" in pages and "/users" in pages
        for path in pages:
            response = client.get(path)
            assert response.status_code == 200, (path, response.text[:300])
            assert "default-src 'self'" in response.headers["content-security-policy"]
            assert response.headers["x-frame-options"] == "DENY"


def test_forms_show_validation_errors_next_to_the_field(migrated: SettingsFactory) -> None:
    settings = migrated()
    name = create_user(settings, role="admin")
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
        csrf = gui_login(client, name)
        response = client.post("/users", data={"csrf_token": csrf, "username": "bad name!", "password": "x" * 20,
                                               "role": "viewer"})
        assert response.status_code == 422
        assert re.search(r'id="e-username">not in the expected form', response.text), response.text
        weak = client.post("/users", data={"csrf_token": csrf, "username": "eve", "password": "short",
                                           "role": "viewer"})
        assert weak.status_code == 422 and 'id="e-password">the password must have at least 12' in weak.text
        created = client.post("/users", data={"csrf_token": csrf, "username": "eve",
                                              "password": "long-enough-password", "role": "operator"})
        assert created.status_code == 200 and "User eve created." in created.text


def test_viewer_sees_no_admin_pages_and_is_refused_them(migrated: SettingsFactory) -> None:
    settings = migrated()
    name = create_user(settings, role="viewer")
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
        gui_login(client, name)
        home = client.get("/")
        assert 'href="/users"' not in home.text and 'href="/audit"' not in home.text
        assert client.get("/users").status_code == 403
        # Read-only pages: no form that the viewer could not submit anyway.
        for path in ("/subnets", "/templates", "/scanners", "/schedules"):
            text = client.get(path).text
            assert 'method="post" action="' + path + '"' not in text, path
            assert "Run now" not in text, path


def test_first_login_goes_to_the_password_page_and_nowhere_else(migrated: SettingsFactory) -> None:
    settings = migrated()
    name = create_user(settings, role="admin", must_change_password=True)
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
        csrf = gui_login(client, name)
        assert client.get("/", follow_redirects=False).headers["location"] == "/password"
        mismatch = client.post("/password", data={"csrf_token": csrf, "current_password": DEFAULT_PASSWORD,
                                                  "new_password": "new-password-123",
                                                  "confirm_password": "new-password-124"})
        assert mismatch.status_code == 422 and 'id="e-confirm_password"' in mismatch.text
        done = client.post("/password", data={"csrf_token": csrf, "current_password": DEFAULT_PASSWORD,
                                              "new_password": "new-password-123",
                                              "confirm_password": "new-password-123"})
        assert done.status_code == 200 and "Password changed." in done.text
        assert client.get("/users").status_code == 200


def test_configuration_pages_create_preview_refuse_deleting_what_is_used_and_audit(migrated: SettingsFactory) -> None:
    """Forms create the objects a template needs; the template page previews its scan; a port list in use is not
    deleted (the reason is shown); every change is in the audit log under the operator's name."""
    settings = migrated()
    name = create_user(settings, role="operator")
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
        csrf = gui_login(client, name)

        def post(path: str, data: dict[str, object]) -> str:
            response = client.post(path, data={"csrf_token": csrf, **data})
            assert response.status_code == 200, (path, response.status_code, response.text[-800:])
            return response.text

        post("/subnets", {"name": "lab", "cidr": "198.18.0.0/30"})
        post("/port-lists", {"name": "web", "spec": "80,443"})
        post("/scanner-groups", {"name": "all", "mode": "split"})
        with psycopg.connect(conninfo(settings, "config")) as conn:
            ids = {path: conn.execute(f"SELECT id FROM {table} WHERE name = %s", (row,)).fetchone()[0]  # type: ignore[index]
                   for path, table, row in (("subnets", "subnets", "lab"), ("port-lists", "port_lists", "web"),
                                            ("scanner-groups", "scanner_groups", "all"))}
        post("/templates", {"name": "web-scan", "port_list_id": ids["port-lists"],
                            "scanner_group_id": ids["scanner-groups"], "subnet_ids": [ids["subnets"]],
                            "rate": "1000", "timeout_ms": "800", "banner": "true"})
        template_id = int(re.findall(r'href="/templates/(\d+)"', client.get("/templates").text)[0])  # the only one
        preview = client.get(f"/templates/{template_id}").text
        assert "4 addresses x 2 ports = 8 probes" in preview

        refused = client.post(f"/port-lists/{ids['port-lists']}/delete", data={"csrf_token": csrf})
        assert refused.status_code == 409 and "web-scan" in refused.text
        assert "web" in client.get("/port-lists").text
        bad = client.post("/templates", data={"csrf_token": csrf, "name": "x", "port_list_id": "",
                                              "scanner_group_id": ids["scanner-groups"]})
        assert bad.status_code == 422 and 'id="e-port_list_id"' in bad.text

    with psycopg.connect(conninfo(settings, "config")) as conn:
        rows = conn.execute("SELECT actor, object_type FROM audit_log ORDER BY id").fetchall()
    assert {r[0] for r in rows} == {name}
    assert [r[1] for r in rows][:4] == ["subnet", "port_list", "scanner_group", "scan_template"]


def test_operator_repairs_a_job_from_the_run_page(migrated: SettingsFactory,
                                                  owner_dsn: Callable[[str], str]) -> None:
    """Redispatch of a running job is queued for the dispatcher and audited; failing a completed job is refused."""
    settings = migrated()
    with psycopg.connect(owner_dsn("jobs")) as conn:
        run = conn.execute("INSERT INTO scan_runs (template_id, template_name, mode, total_cost, done_cost)"
                           " VALUES (1, 'nightly', 'split', 20, 5) RETURNING id").fetchone()
        assert run is not None
        jobs = [conn.execute("INSERT INTO jobs (run_id, status, targets, ports, cost) VALUES (%s, %s, '[]', '80', 10)"
                             " RETURNING id", (run[0], status)).fetchone() for status in ("running", "completed")]
    running, completed = (j[0] for j in jobs if j is not None)
    name = create_user(settings, role="operator")
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
        csrf = gui_login(client, name)
        page = client.get(f"/scans/{run[0]}").text
        assert 'id="run-percent">25%' in page and f"/jobs/{running}/reassign" in page
        assert f"/jobs/{completed}/" not in page  # nothing to repair on a completed job
        done = client.post(f"/scans/{run[0]}/jobs/{running}/redispatch", data={"csrf_token": csrf})
        assert done.status_code == 200 and "redispatch requested" in done.text
        refused = client.post(f"/scans/{run[0]}/jobs/{completed}/fail", data={"csrf_token": csrf})
        assert "only pending or running jobs" in refused.text
    with psycopg.connect(owner_dsn("config")) as conn:
        assert conn.execute("SELECT action, job_id, requested_by FROM repair_requests").fetchall() == [
            ("redispatch", running, name)]
        assert conn.execute("SELECT action FROM audit_log").fetchall() == [("repair.redispatch",)]


def test_dashboard_names_the_scanners_that_went_silent(migrated: SettingsFactory,
                                                       owner_dsn: Callable[[str], str]) -> None:
    """Counts of online/offline/outdated scanners, and the offline ones by name with their last heartbeat."""
    settings = migrated()
    with psycopg.connect(owner_dsn("config")) as conn:
        # 'alive' reports an agent older than the appliance's minimum (0.1.0): online but outdated.
        conn.execute("INSERT INTO scanners (name, status, last_heartbeat_at, last_address, version) VALUES"
                     " ('alive', 'active', now(), '198.18.0.21', '0.0.9'),"
                     " ('silent', 'active', now() - interval '1 hour', '198.18.0.22', '0.1.0'),"
                     " ('new', 'pending', NULL, NULL, NULL)")
    name = create_user(settings, role="viewer")
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
        gui_login(client, name)
        live = client.get("/dashboard/live").text
    assert re.search(r'<span class="n">1</span> scanners online', live)
    assert re.search(r'<span class="n">1</span> offline', live)
    assert re.search(r'<span class="n">1</span> awaiting install', live)
    assert re.search(r'<span class="n">1</span> outdated', live)
    assert "silent</a> (last heartbeat" in live and "198.18.0.22" in live and "alive</a>" not in live


HOSTILE = {"q": "<b>x</b>", "page": "-1", "before_id": "abc", "run_id": "99999999999999999999999",
           "scanner_id": "0", "since": "nonsense", "until": "2026-13-45", "at": "x", "ip": "::zz",
           "subnet": "10.0.0.0/99", "port": "70000", "status": "<b>bad</b>", "change": "nope", "by": "'; --",
           "object_type": "<i>", "event_class": "x" * 500, "template_id": "-3", "state": "?", "after_ip": "x",
           "uncovered": "2"}


def test_every_page_survives_hostile_query_parameters(migrated: SettingsFactory) -> None:
    """Garbage in every filter of every page: a page with messages (or a 4xx), never a 5xx, nothing unescaped."""
    settings = migrated()
    name = create_user(settings, role="admin")
    app = create_app(settings)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        gui_login(client, name)
        pages = [r.path for r in app.routes if isinstance(r, HTTPRoute) and "GET" in r.methods
                 and not r.path.startswith(("/api", "/static", "/health")) and "{" not in r.path]
        for path in pages:
            response = client.get(path, params=HOSTILE, follow_redirects=False)
            assert response.status_code < 500, (path, response.status_code, response.text[-500:])
            assert "<b>x</b>" not in response.text and "<b>bad</b>" not in response.text, path
            # PostgreSQL text cannot hold NUL: refused up front with a message, not a database error.
            nul = client.get(path, params={k: "a\x00b" for k in HOSTILE}, follow_redirects=False)
            assert nul.status_code == 400 and "NUL character" in nul.text, (path, nul.status_code)
        csrf = TOKEN.search(client.get("/subnets").text)
        assert csrf
        posted = client.post("/subnets", data={"csrf_token": csrf.group(1), "name": "n", "cidr": "198.18.0.1",
                                               "description": "a\x00b"})
        assert posted.status_code == 400 and "NUL character" in posted.text


def test_operator_acknowledges_events_and_filters_the_open_ones(migrated: SettingsFactory,
                                                                 owner_dsn: Callable[[str], str]) -> None:
    settings = migrated()
    with psycopg.connect(owner_dsn("config")) as conn:
        ids = [conn.execute("INSERT INTO events (class, severity, message) VALUES (%s, %s, %s) RETURNING id",
                            row).fetchone()[0]  # type: ignore[index]
               for row in (("port_opened", "warning", "198.18.0.5:22 opened"), ("run_finished", "info", "done"))]
    name = create_user(settings, role="operator")
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
        csrf = gui_login(client, name)
        done = client.post(f"/events/{ids[0]}/acknowledge",
                           data={"csrf_token": csrf, "back": "/events?severity=warning"})
        assert done.status_code == 200 and str(done.url).endswith("/events?severity=warning&notice=Event+%23"
                                                                  f"{ids[0]}+acknowledged.")
        open_ones = client.get("/events", params={"open": "1"}).text
        assert "done" in open_ones and "198.18.0.5:22 opened" not in open_ones
        assert "198.18.0.5:22 opened" in client.get("/events", params={"severity": "warning"}).text
        assert client.post("/events/999999/acknowledge", data={"csrf_token": csrf}).status_code == 404
        evil = client.post(f"/events/{ids[1]}/acknowledge", data={"csrf_token": csrf, "back": "//evil.example/"})
        assert str(evil.url).startswith("http://127.0.0.1/events?notice=")
    with psycopg.connect(owner_dsn("config")) as conn:
        assert conn.execute("SELECT actor, action, object_id FROM audit_log ORDER BY id").fetchall() == [
            (name, "acknowledge", str(ids[0])), (name, "acknowledge", str(ids[1]))]


def test_admin_adds_rotates_disables_and_enables_a_scanner_from_its_pages(migrated: SettingsFactory) -> None:
    """Add shows a single-use token once; rotate shows a new one; disable/enable change the status; all audited."""
    settings = migrated()
    name = create_user(settings, role="admin")
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
        csrf = gui_login(client, name)
        added = client.post("/scanners", data={"csrf_token": csrf, "name": "edge-a", "rate_limit": "1000",
                                               "concurrency": "100"})
        first = re.search(r'id="enrolment-token">([^<]+)<', added.text)
        assert added.status_code == 200 and first and "/scanner/install.sh" in added.text
        scanner_id = int(re.findall(r'href="/scanners/(\d+)"', added.text)[0])
        detail = client.get(f"/scanners/{scanner_id}").text
        assert first.group(1) not in detail  # never shown again
        rotated = client.post(f"/scanners/{scanner_id}/rotate", data={"csrf_token": csrf})
        second = re.search(r'id="enrolment-token">([^<]+)<', rotated.text)
        assert second and second.group(1) != first.group(1)
        disabled = client.post(f"/scanners/{scanner_id}/disable", data={"csrf_token": csrf})
        assert "disabled" in disabled.text and ">Enable<" in disabled.text
        enabled = client.post(f"/scanners/{scanner_id}/enable", data={"csrf_token": csrf})
        assert "enabled (pending)" in enabled.text  # never enrolled: it becomes active at its first enrolment
        taken = client.post("/scanners", data={"csrf_token": csrf, "name": "edge-a"})
        assert taken.status_code == 422 and 'id="e-name">a scanner named' in taken.text
    with psycopg.connect(conninfo(settings, "config")) as conn:
        actions = [r[0] for r in conn.execute("SELECT action FROM audit_log ORDER BY id").fetchall()]
    assert actions[0] == "scanner.create"
    assert {"scanner.rotate_key", "scanner.disable", "scanner.enable"} <= set(actions)
