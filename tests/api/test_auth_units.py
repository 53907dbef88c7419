"""Pure pieces of the manager's auth: client address behind proxies, safe redirects, role requirements."""

from __future__ import annotations

import pytest
from litestar.connection import ASGIConnection

from app.config import parse_settings
from app.roles.manager.auth import client_address, cookie_name, required_role
from app.roles.manager.gui.session_pages import _safe_next

DBS = {"config": {"name": "c"}, "jobs": {"name": "j"}, "results": {"name": "r"}}


def _conn(peer: str, forwarded: str | None = None) -> ASGIConnection:
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded is not None else []
    return ASGIConnection({"type": "http", "client": (peer, 50000), "headers": headers, "path": "/",
                           "query_string": b"", "method": "POST"})  # type: ignore[arg-type]


@pytest.mark.parametrize(("peer", "forwarded", "trusted", "expected"), [
    ("198.18.0.5", None, [], "198.18.0.5"),
    ("198.18.0.5", "203.0.113.9", [], "198.18.0.5"),                      # untrusted peer: header ignored
    ("198.18.0.2", "203.0.113.9", ["198.18.0.2/32"], "203.0.113.9"),       # Traefik: its last hop
    ("198.18.0.2", "10.9.9.9, 203.0.113.9", ["198.18.0.2/32"], "203.0.113.9"),  # client-written hops ignored
    ("198.18.0.2", "not-an-ip", ["198.18.0.2/32"], "198.18.0.2"),          # garbage: fall back to the peer
    ("198.18.0.2", "", ["198.18.0.0/24"], "198.18.0.2"),
    ("testclient", "203.0.113.9", ["0.0.0.0/0"], None),                     # no address at all
])
def test_client_address_trusts_forwarded_for_only_from_trusted_proxies(
    peer: str, forwarded: str | None, trusted: list[str], expected: str | None,
) -> None:
    """Throttling keys on the real client: X-Forwarded-For counts only when Traefik sent it."""
    settings = parse_settings({"databases": DBS, "manager": {"trusted_proxies": trusted}})
    assert client_address(_conn(peer, forwarded), settings) == expected


@pytest.mark.parametrize(("target", "expected"), [
    ("/scans/3", "/scans/3"), ("//evil.example/", "/"), ("/\\evil.example", "/"),
    ("https://evil.example/", "/"), ("", "/"), (None, "/"),
])
def test_login_redirects_only_to_local_paths(target: str | None, expected: str) -> None:
    """The login page's `next` cannot send a user to another site."""
    assert _safe_next(target) == expected


def test_roles_required_by_method_and_explicit_option() -> None:
    assert required_role("GET", {}) == "viewer" and required_role("HEAD", {}) == "viewer"
    assert all(required_role(m, {}) == "operator" for m in ("POST", "PUT", "PATCH", "DELETE"))
    assert required_role("GET", {"min_role": "admin"}) == "admin"


def test_cookie_name_has_the_host_prefix_whenever_cookies_are_secure() -> None:
    secure = parse_settings({"databases": DBS})
    plain = parse_settings({"databases": DBS, "session": {"secure_cookies": False}})
    assert cookie_name(secure) == "__Host-mipo_session" and cookie_name(plain) == "mipo_session"
