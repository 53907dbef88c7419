"""Quick check that the support client logs in and reaches a guarded route."""

from __future__ import annotations

from litestar.testing import TestClient

from tests.support.manager import manager_api  # noqa: F401


def test_admin_client_reads_users(manager_api: TestClient) -> None:  # noqa: F811
    """The logged-in helper reaches an admin route and sees itself."""
    r = manager_api.get("/api/users")
    assert r.status_code == 200, r.text
    assert r.json()["total"] == 1
    r = manager_api.post("/api/users", json={"username": "bob", "password": "a-long-password-1", "role": "viewer"})
    assert r.status_code == 201, r.text
