"""`python -m app create-admin`: the deploy's first admin, created once, forced to change its password."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from litestar.testing import TestClient

from app.roles.manager.app import create_app
from tests.conftest import SettingsFactory
from tests.support.manager import login
from tests.support.postgres import PostgresServer
from tests.support.services import write_toml
from tests.support.settings import settings_document


def test_create_admin_creates_once_and_forces_a_password_change(
    pg: PostgresServer, databases: dict[str, str], credentials_dir: Path, tmp_path: Path, migrated: SettingsFactory,
) -> None:
    """Running it twice creates one admin; its first login can only change the password."""
    config = write_toml(settings_document(pg, databases, "mipo_manager"), tmp_path / "mipo.toml")
    secret = tmp_path / "admin-password"
    secret.write_text("initial-admin-password-1\n")
    cmd = [sys.executable, "-m", "app", "--config", str(config), "create-admin", "--username", "admin",
           "--password-file", str(secret)]
    env = {"CREDENTIALS_DIRECTORY": str(credentials_dir), "PATH": "/usr/bin:/bin"}
    first = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    assert first.returncode == 0, first.stderr
    assert "created admin 'admin'" in first.stdout
    second = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    assert second.returncode == 0 and "already exists" in second.stdout

    with TestClient(create_app(migrated()), base_url="http://127.0.0.1") as api:
        me = login(api, "admin", "initial-admin-password-1").get("/api/auth/me").json()
        assert me == {**me, "role": "admin", "must_change_password": True}
        audit_blocked = api.get("/api/audit")
        assert audit_blocked.status_code == 403


def test_create_admin_refuses_a_weak_or_missing_password_file(
    pg: PostgresServer, databases: dict[str, str], credentials_dir: Path, tmp_path: Path, migrated: SettingsFactory,
) -> None:
    """A short password or unreadable file is a clear one-line error and exit 1."""
    config = write_toml(settings_document(pg, databases, "mipo_manager"), tmp_path / "mipo.toml")
    weak = tmp_path / "weak"
    weak.write_text("short\n")
    env = {"CREDENTIALS_DIRECTORY": str(credentials_dir), "PATH": "/usr/bin:/bin"}
    for path, expected in ((weak, "at least 12 characters"), (tmp_path / "missing", "cannot read")):
        run = subprocess.run([sys.executable, "-m", "app", "--config", str(config), "create-admin",
                              "--password-file", str(path)], env=env, capture_output=True, text=True, check=False)
        assert run.returncode == 1 and expected in run.stderr, run.stderr
