"""The manager's security properties, against the real app and real PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from litestar import Litestar
from litestar.routes import HTTPRoute
from litestar.testing import TestClient

from app.config import Settings
from app.roles.manager.app import create_app
from app.roles.manager.auth import SAFE_METHODS, required_role
from tests.conftest import SettingsFactory
from tests.support.manager import DEFAULT_PASSWORD, create_user, login, manager_client
from tests.support.postgres import PostgresServer
from tests.support.services import serve_role, write_toml
from tests.support.settings import settings_document

UNSAFE = ("POST", "PUT", "PATCH", "DELETE")
# Unsafe routes a viewer may use on purpose: logging in and out and changing one's own password.
VIEWER_ALLOWED = {("POST", "/api/auth/login"), ("POST", "/api/auth/logout"), ("POST", "/api/auth/password"),
                  ("POST", "/login"), ("POST", "/logout"), ("POST", "/password")}


def _concrete(path: str) -> str:
    """A route template with its parameters filled in (`{id:int}` → 1)."""
    return re.sub(r"\{(\w+):(\w+)\}", lambda m: "1" if m.group(2) == "int" else "x", path)


def unsafe_routes(app: Litestar) -> list[tuple[str, str, dict]]:
    found = []
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            for method in handler.http_methods:
                if method in UNSAFE:
                    found.append((method, route.path, handler.opt))
    return found


def _session_cookie(response: httpx.Response) -> str:
    return response.headers["set-cookie"]


def test_session_cookie_is_host_prefixed_secure_httponly_samesite_strict(migrated: SettingsFactory) -> None:
    """The session cookie cannot be read by scripts, sent cross-site, over HTTP, or scoped to another host."""
    settings = migrated(session={"secure_cookies": True})
    name = create_user(settings, role="viewer")
    with TestClient(create_app(settings), base_url="https://127.0.0.1") as client:
        response = client.post("/api/auth/login", json={"username": name, "password": DEFAULT_PASSWORD})
        assert response.status_code == 200, response.text
        header = _session_cookie(response)
        attributes = [a.strip().lower() for a in header.split(";")]
        assert header.startswith("__Host-mipo_session=")
        assert "secure" in attributes and "httponly" in attributes and "samesite=strict" in attributes
        assert "path=/" in attributes
        assert not [a for a in attributes if a.startswith("domain=")]
        assert client.get("/api/auth/me").status_code == 200


def test_plain_http_test_mode_drops_only_the_host_prefix_and_secure(migrated: SettingsFactory) -> None:
    """With secure_cookies off (loopback tests), the cookie is still HttpOnly and SameSite=Strict."""
    settings = migrated()
    name = create_user(settings, role="viewer")
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
        header = _session_cookie(client.post("/api/auth/login", json={"username": name,
                                                                       "password": DEFAULT_PASSWORD}))
    attributes = [a.strip().lower() for a in header.split(";")]
    assert header.startswith("mipo_session=") and "httponly" in attributes and "samesite=strict" in attributes


def test_unsafe_request_without_or_with_a_wrong_csrf_token_is_refused(migrated: SettingsFactory) -> None:
    """A forged cross-site request carrying the session cookie cannot change anything."""
    with manager_client(migrated(), role="admin") as api:
        token = api.headers.pop("X-CSRF-Token")
        body = {"username": "mallory", "password": "a-long-password-1", "role": "admin"}
        missing = api.post("/api/users", json=body)
        assert missing.status_code == 403 and missing.json()["reason"] == "csrf"
        wrong = api.post("/api/users", json=body, headers={"X-CSRF-Token": token[:-2] + "xx"})
        assert wrong.status_code == 403 and wrong.json()["reason"] == "csrf"
        assert api.get("/api/users", params={"q": "mallory"}).json()["total"] == 0
        ok = api.post("/api/users", json=body, headers={"X-CSRF-Token": token})
        assert ok.status_code == 201, ok.text


def test_route_table_has_unsafe_routes_to_check(migrated: SettingsFactory) -> None:
    """The enumeration below sees the API's modifying routes (so it cannot pass vacuously)."""
    paths = {path for _, path, _ in unsafe_routes(create_app(migrated()))}
    assert {"/api/users", "/api/users/{user_id:int}"} <= paths


def test_viewer_is_refused_on_every_modifying_route(migrated: SettingsFactory) -> None:
    """Every unsafe route in the route table (GUI and API) refuses a viewer, except logging in/out and own password."""
    settings = migrated()
    with manager_client(settings, role="viewer") as api:
        routes = unsafe_routes(api.app)  # type: ignore[arg-type]
        checked = 0
        for method, path, opt in routes:
            if (method, path) in VIEWER_ALLOWED or path.startswith("/api/schema"):
                assert required_role(method, opt) == "viewer" or opt.get("public"), (method, path)
                continue
            assert required_role(method, opt) in ("operator", "admin"), (method, path)
            response = api.request(method, _concrete(path), json={}, follow_redirects=False)
            assert response.status_code == 403, (method, path, response.status_code, response.text[:200])
            checked += 1
        assert checked >= 3
        # Nothing the viewer tried left a trace in the audit log.
        with psycopg.connect(_config_dsn(settings)) as conn:
            row = conn.execute("SELECT count(*) FROM audit_log").fetchone()
            assert row is not None and row[0] == 0


def test_anonymous_requests_are_refused_everywhere_but_login(migrated: SettingsFactory) -> None:
    """Without a session every non-public route answers 401 (API) or sends to the login page (GUI)."""
    app = create_app(migrated())
    with TestClient(app, base_url="http://127.0.0.1") as client:
        for route in app.routes:
            if not isinstance(route, HTTPRoute) or route.path.startswith(("/api/schema", "/static")):
                continue
            for handler in route.route_handlers:
                if handler.opt.get("public") or route.path == "/health":
                    continue
                for method in handler.http_methods - {"OPTIONS", "HEAD"}:
                    response = client.request(method, _concrete(route.path), follow_redirects=False)
                    if route.path.startswith("/api/"):
                        assert response.status_code == 401, (method, route.path, response.status_code)
                    else:
                        assert response.status_code in (302, 303, 401), (method, route.path, response.status_code)


def test_login_issues_a_new_session_id_and_ignores_a_planted_one(migrated: SettingsFactory) -> None:
    """Session fixation: the id after login is fresh, different at every login, never the one sent."""
    settings = migrated()
    name = create_user(settings, role="viewer")
    body = {"username": name, "password": DEFAULT_PASSWORD}
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
        def send_only(session_id: str) -> None:
            # The client's jar holds the one cookie sent (httpx deprecates per-request cookies=).
            client.cookies.clear()
            client.cookies.set("mipo_session", session_id)

        send_only("planted-by-attacker")
        assert client.get("/api/auth/me").status_code == 401
        first = client.post("/api/auth/login", json=body).cookies.get("mipo_session")
        assert first and first != "planted-by-attacker"
        send_only(first)
        second = client.post("/api/auth/login", json=body).cookies.get("mipo_session")
        assert second and second != first
        # Logging in again ends the session the browser held before.
        send_only(first)
        assert client.get("/api/auth/me").status_code == 401
        send_only(second)
        assert client.get("/api/auth/me").status_code == 200


def test_logged_out_session_is_dead_server_side(migrated: SettingsFactory) -> None:
    """Replaying the cookie after logout gets 401: the server deleted the session."""
    settings = migrated()
    with manager_client(settings, role="operator") as api:
        cookie = api.cookies.get("mipo_session")
        assert cookie
        assert api.post("/api/auth/logout").status_code == 204
        with TestClient(api.app, base_url="http://127.0.0.1") as replay:  # type: ignore[arg-type]
            replay.cookies.set("mipo_session", cookie)
            assert replay.get("/api/auth/me").status_code == 401
    with psycopg.connect(_config_dsn(settings)) as conn:
        row = conn.execute("SELECT count(*) FROM sessions").fetchone()
        assert row is not None and row[0] == 0


def test_sessions_store_only_a_digest_of_the_cookie(migrated: SettingsFactory) -> None:
    """A copy of the config database does not contain usable session ids."""
    settings = migrated()
    with manager_client(settings, role="viewer") as api:
        cookie = api.cookies.get("mipo_session")
        assert cookie
        with psycopg.connect(_config_dsn(settings)) as conn:
            rows = conn.execute("SELECT id_hash FROM sessions").fetchall()
        assert len(rows) == 1 and bytes(rows[0][0]) != cookie.encode() and len(bytes(rows[0][0])) == 32


@pytest.mark.parametrize("expire", [
    "UPDATE sessions SET last_seen_at = now() - interval '31 minutes'",
    "UPDATE sessions SET expires_at = now() - interval '1 second'",
], ids=["idle", "absolute"])
def test_idle_and_absolute_timeouts_end_a_session(migrated: SettingsFactory, expire: str) -> None:
    """A session idle longer than session.idle_minutes, or past its absolute lifetime, is refused."""
    settings = migrated()
    with manager_client(settings, role="viewer") as api:
        assert api.get("/api/auth/me").status_code == 200
        with psycopg.connect(_config_dsn(settings)) as conn:
            conn.execute(expire)
        assert api.get("/api/auth/me").status_code == 401


def test_disabled_user_cannot_log_in_and_is_logged_out_when_disabled(migrated: SettingsFactory) -> None:
    """Disabling a user ends their sessions at once and refuses new logins."""
    settings = migrated()
    with manager_client(settings, role="admin") as admin, manager_client(settings, role="operator") as op:
        me = op.get("/api/auth/me").json()["username"]
        uid = next(u["id"] for u in admin.get("/api/users").json()["items"] if u["username"] == me)
        assert admin.patch(f"/api/users/{uid}", json={"disabled": True}).status_code == 200
        assert op.get("/api/auth/me").status_code == 401
        refused = op.post("/api/auth/login", json={"username": me, "password": DEFAULT_PASSWORD})
        assert refused.status_code == 403 and refused.json()["reason"] == "disabled"


def test_first_login_must_change_password_before_anything_else(migrated: SettingsFactory) -> None:
    """The deploy's admin (must_change_password) can do nothing but change the password."""
    settings = migrated()
    name = create_user(settings, role="admin", must_change_password=True)
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as api:
        me = login(api, name).get("/api/auth/me").json()
        assert me["must_change_password"] is True
        blocked = api.get("/api/users")
        assert blocked.status_code == 403 and blocked.json()["reason"] == "password_change_required"
        weak = api.post("/api/auth/password", json={"current_password": DEFAULT_PASSWORD, "new_password": "short"})
        assert weak.status_code == 422 and weak.json()["field"] == "new_password"
        wrong = api.post("/api/auth/password", json={"current_password": "nope-nope-nope",
                                                     "new_password": "a-brand-new-password"})
        assert wrong.status_code == 422 and wrong.json()["field"] == "current_password"
        done = api.post("/api/auth/password", json={"current_password": DEFAULT_PASSWORD,
                                                    "new_password": "a-brand-new-password"})
        assert done.status_code == 204, done.text
        assert api.get("/api/users").status_code == 200


def test_account_is_throttled_after_repeated_failures_even_with_the_right_password(
    migrated: SettingsFactory,
) -> None:
    """After max_failures_per_account wrong passwords, the right one is refused too (429) for a window."""
    settings = migrated(session={"secure_cookies": False, "max_failures_per_account": 3})
    name = create_user(settings, role="viewer")
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
        for _ in range(3):
            r = client.post("/api/auth/login", json={"username": name, "password": "wrong-password-x"})
            assert r.status_code == 401 and r.json()["reason"] == "bad_credentials"
        r = client.post("/api/auth/login", json={"username": name, "password": DEFAULT_PASSWORD})
        assert r.status_code == 429 and r.json()["reason"] == "throttled"
        with psycopg.connect(_config_dsn(settings)) as conn:  # the window passes
            conn.execute("UPDATE login_attempts SET at = at - interval '16 minutes'")
        assert client.post("/api/auth/login", json={"username": name, "password": DEFAULT_PASSWORD}).status_code == 200


@pytest.fixture()
def served_manager(pg: PostgresServer, databases: dict[str, str], credentials_dir: Path, tmp_path: Path,
                   migrated: SettingsFactory) -> Iterator[Callable[..., tuple[str, Settings]]]:
    """Start the manager as a real process (peer address 127.0.0.1) with the given settings overrides."""
    stack: list = []

    def start(**overrides: object) -> tuple[str, Settings]:
        doc = settings_document(pg, databases, "mipo_manager", **overrides)
        config = write_toml(doc, tmp_path / f"mipo-{len(stack)}.toml")
        ctx = serve_role(config, "manager", credentials_dir, tmp_path / "manager.log")
        url = ctx.__enter__()
        stack.append(ctx)
        return url, migrated(**overrides)

    yield start
    for ctx in reversed(stack):
        ctx.__exit__(None, None, None)


def _failures(url: str, user: str, n: int, forwarded: str | None = None) -> list[int]:
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    return [httpx.post(url + "/api/auth/login", json={"username": user, "password": "wrong-password-x"},
                       headers=headers, timeout=30).status_code for _ in range(n)]


def test_client_address_is_throttled_and_comes_from_xff_only_behind_a_trusted_proxy(
    served_manager: Callable[..., tuple[str, Settings]],
) -> None:
    """Guessing across many accounts from one address is throttled; X-Forwarded-For counts only from Traefik."""
    session = {"secure_cookies": False, "max_failures_per_address": 3, "max_failures_per_account": 100}
    url, settings = served_manager(session=session, manager={"trusted_proxies": ["127.0.0.1/32"]})
    victim = create_user(settings, role="viewer")
    assert _failures(url, "nobody-a", 3, "198.18.0.77") == [401, 401, 401]
    good = {"username": victim, "password": DEFAULT_PASSWORD}
    blocked = httpx.post(url + "/api/auth/login", json=good, headers={"X-Forwarded-For": "198.18.0.77"})
    assert blocked.status_code == 429
    # The last hop is what Traefik saw; a client-written first hop does not matter.
    other = httpx.post(url + "/api/auth/login", json=good, headers={"X-Forwarded-For": "198.18.0.77, 198.18.0.78"})
    assert other.status_code == 200
    with psycopg.connect(_config_dsn(settings)) as conn:
        addresses = {str(r[0]) for r in conn.execute("SELECT DISTINCT client_address FROM login_attempts")}
    assert addresses == {"198.18.0.77", "198.18.0.78"}


def test_forwarded_header_from_an_untrusted_peer_is_ignored(
    served_manager: Callable[..., tuple[str, Settings]],
) -> None:
    """Without a trusted proxy, a client cannot escape address throttling by inventing X-Forwarded-For."""
    url, settings = served_manager(session={"secure_cookies": False, "max_failures_per_address": 2,
                                            "max_failures_per_account": 100})
    victim = create_user(settings, role="viewer")
    assert _failures(url, "nobody-b", 2, "198.18.0.10") == [401, 401]
    r = httpx.post(url + "/api/auth/login", json={"username": victim, "password": DEFAULT_PASSWORD},
                   headers={"X-Forwarded-For": "198.18.0.11"})
    assert r.status_code == 429


def _config_dsn(settings: Settings) -> str:
    from app.db.connect import conninfo
    return conninfo(settings, "config")


assert SAFE_METHODS  # imported for readers: the guard's notion of "safe"


def test_openapi_document_is_served_but_no_html_viewer_with_cdn_scripts(migrated: SettingsFactory) -> None:
    """The schema is at /api/schema/openapi.json; no Swagger/Redoc page pulls scripts from a CDN."""
    with TestClient(create_app(migrated()), base_url="http://127.0.0.1") as client:
        schema = client.get("/api/schema/openapi.json")
        assert schema.status_code == 200 and "/api/users" in schema.json()["paths"]
        for viewer in ("swagger", "redoc", "rapidoc", "elements"):
            response = client.get(f"/api/schema/{viewer}")
            assert response.status_code == 404 or "cdn" not in response.text.lower(), viewer


def test_self_refreshing_pages_do_not_keep_an_unattended_session_alive(migrated: SettingsFactory) -> None:
    """htmx polling (X-Mipo-Poll) is answered but does not reset the idle timer; a real request does."""
    settings = migrated()
    with manager_client(settings, role="viewer") as api, psycopg.connect(_config_dsn(settings)) as conn:
        conn.autocommit = True
        conn.execute("UPDATE sessions SET last_seen_at = now() - interval '20 minutes'")

        def idle_minutes() -> float:
            row = conn.execute("SELECT extract(epoch FROM now() - last_seen_at) / 60 FROM sessions").fetchone()
            assert row is not None
            return float(row[0])

        assert api.get("/dashboard/live", headers={"X-Mipo-Poll": "1", "HX-Request": "true"}).status_code == 200
        assert idle_minutes() > 19
        assert api.get("/").status_code == 200
        assert idle_minutes() < 1


def test_operator_is_refused_on_every_admin_route(migrated: SettingsFactory) -> None:
    """Routes marked admin (users, audit, scanner enrolment, restores, …) refuse an operator, GET or not."""
    with manager_client(migrated(), role="operator") as api:
        admin_routes = [(method, route.path) for route in api.app.routes if isinstance(route, HTTPRoute)  # type: ignore[attr-defined]
                        for handler in route.route_handlers if handler.opt.get("min_role") == "admin"
                        for method in handler.http_methods - {"OPTIONS", "HEAD"}]
        assert {("GET", "/api/users"), ("GET", "/api/audit/verify"), ("GET", "/users")} <= set(admin_routes)
        for method, path in admin_routes:
            response = api.request(method, _concrete(path), json={}, follow_redirects=False)
            assert response.status_code == 403, (method, path, response.status_code)


def test_api_filters_refuse_nul_with_a_client_error(migrated: SettingsFactory) -> None:
    """Text filters reach SQL as parameters; a NUL (which PostgreSQL text cannot hold) is a 400, not a 5xx."""
    with manager_client(migrated(), role="admin") as api:
        for path, params in (("/api/users", {"q": "a\x00"}), ("/api/audit", {"by": "a\x00"}),
                             ("/api/audit", {"object_type": "\x00"})):
            response = api.get(path, params=params)
            assert response.status_code == 400, (path, response.status_code, response.text)
        login = api.post("/api/auth/login", json={"username": "a\x00", "password": "whatever-password"})
        assert login.status_code == 400, login.text


def test_optional_id_filters_enforce_the_bounds_they_advertise(migrated: SettingsFactory) -> None:
    """An optional id filter outside 1..2^62 is a 400 naming the parameter (the bounds the OpenAPI states)."""
    with manager_client(migrated(), role="admin") as api:
        for path, name in (("/api/runs", "before_id"), ("/api/runs", "template_id"), ("/api/events", "before_id"),
                           ("/api/exclusions", "template_id"), ("/api/changes", "before_id")):
            for bad in ("0", str(2**62 + 1)):
                response = api.get(path, params={name: bad})
                assert response.status_code == 400, (path, name, bad, response.status_code, response.text)
                assert name in response.text, (path, name, response.text)
            assert api.get(path, params={name: "1"}).status_code == 200, (path, name)
