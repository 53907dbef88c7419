"""Logged-in HTTP clients for the manager: users made directly in the config DB, then a real login.

Use in API tests (real PostgreSQL via the `migrated` fixture):

    from tests.support.manager import manager_client

    def test_x(migrated):
        with manager_client(migrated(), role="operator") as api:
            api.post("/api/subnets", json={...})     # session cookie + X-CSRF-Token already set

or the `manager_api` fixture (an admin client): `from tests.support.manager import manager_api  # noqa: F401`.
Against a served process (`serve_role`): `http_client(url, settings, role="viewer")`.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from typing import TypeVar

import httpx
import psycopg
import pytest
from litestar.testing import TestClient

from app.config import Settings
from app.db.connect import conninfo
from app.domain.users.passwords import hash_password_sync
from tests.conftest import SettingsFactory

DEFAULT_PASSWORD = "correct-horse-battery-staple"
_names = itertools.count(1)
C = TypeVar("C", bound=httpx.Client)


def create_user(settings: Settings, username: str | None = None, *, role: str = "operator",
                password: str = DEFAULT_PASSWORD, must_change_password: bool = False,
                disabled: bool = False) -> str:
    """Insert a user straight into the config database (as the manager's DB role); returns the username."""
    username = username or f"{role}{next(_names)}"
    with psycopg.connect(conninfo(settings, "config")) as conn:
        conn.execute(
            "INSERT INTO users (username, password_hash, role, must_change_password, disabled)"
            " VALUES (%s, %s, %s, %s, %s)",
            (username, hash_password_sync(password), role, must_change_password, disabled),
        )
    return username


def login(client: C, username: str, password: str = DEFAULT_PASSWORD) -> C:
    """Log in through `POST /api/auth/login`; the client keeps the cookie and sends the CSRF header."""
    response = client.post("/api/auth/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    client.headers["X-CSRF-Token"] = response.json()["csrf_token"]
    return client


@contextlib.contextmanager
def manager_client(settings: Settings, role: str = "admin", username: str | None = None,
                   password: str = DEFAULT_PASSWORD) -> Iterator[TestClient]:
    """The manager app in-process (real databases), logged in as a fresh user with `role`."""
    from app.roles.manager.app import create_app

    name = create_user(settings, username, role=role, password=password)
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
        yield login(client, name, password)


@contextlib.contextmanager
def http_client(base_url: str, settings: Settings, role: str = "admin", username: str | None = None,
                password: str = DEFAULT_PASSWORD) -> Iterator[httpx.Client]:
    """A logged-in client for a manager served as a real process (`tests.support.services.serve_role`)."""
    name = create_user(settings, username, role=role, password=password)
    with httpx.Client(base_url=base_url, timeout=30, trust_env=False) as client:
        yield login(client, name, password)


@pytest.fixture()
def manager_api(migrated: SettingsFactory) -> Iterator[TestClient]:
    """An admin logged in to an in-process manager over migrated test databases."""
    with manager_client(migrated(), role="admin") as client:
        yield client
