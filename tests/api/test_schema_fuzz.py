"""Schemathesis against the manager's served OpenAPI schema, logged in as an admin: no 5xx, no schema violation."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from app.config import Settings
from tests.conftest import SettingsFactory
from tests.integration.backup_support import make_kit
from tests.support.manager import http_client
from tests.support.postgres import PostgresServer
from tests.support.services import serve_role, write_toml
from tests.support.settings import settings_document

# Operations that would end the fuzzing session itself (logout, password change) or lock it out (login).
EXCLUDED = r"^/api/auth/(login|logout|password)$"


def test_admin_api_survives_schema_fuzzing(pg: PostgresServer, databases: dict[str, str], credentials_dir: Path,
                                           tmp_path: Path, migrated: SettingsFactory) -> None:
    """Every /api operation, with valid and invalid inputs: never a 5xx, every documented response matches.

    The backup service runs too, so /api/backups is fuzzed through to it rather than answering 503."""
    kit = make_kit(pg, credentials_dir, tmp_path)
    migrated("mipo_backup", **kit.overrides)
    backup_config = write_toml(settings_document(pg, databases, "mipo_backup", **kit.overrides),
                               tmp_path / "backup.toml")
    with serve_role(backup_config, "backup", credentials_dir, tmp_path / "backup.log") as backup_url:
        backup = {**kit.overrides["backup"], "url": backup_url}  # type: ignore[dict-item]
        settings = migrated(backup=backup)
        config = write_toml(settings_document(pg, databases, "mipo_manager", backup=backup), tmp_path / "mipo.toml")
        run, still_logged_in = _fuzz(config, credentials_dir, tmp_path, settings)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert still_logged_in, "the fuzzing session was logged out midway: the results would be hollow"


def _fuzz(config: Path, credentials_dir: Path, tmp_path: Path,
          settings: Settings) -> tuple[subprocess.CompletedProcess[str], bool]:
    with serve_role(config, "manager", credentials_dir, tmp_path / "manager.log") as url, \
            http_client(url, settings, role="admin") as api:
        schema = httpx.get(url + "/api/schema/openapi.json", timeout=30)
        assert schema.status_code == 200 and schema.json()["paths"], schema.text[:300]
        cookie = "; ".join(f"{name}={value}" for name, value in api.cookies.items())
        run = subprocess.run(
            [str(Path(sys.executable).with_name("st")), "run", url + "/api/schema/openapi.json",
             "--checks", "not_a_server_error,response_schema_conformance",
             "-H", f"Cookie: {cookie}", "-H", f"X-CSRF-Token: {api.headers['X-CSRF-Token']}",
             "--exclude-path-regex", EXCLUDED, "--max-examples", "25", "--seed", "1", "--workers", "1",
             "--request-timeout", "30", "--no-color", "--report", "junit", "--report-dir", str(tmp_path)],
            cwd=tmp_path, capture_output=True, text=True, check=False, timeout=1500,
            env={**os.environ, "NO_COLOR": "1"},
        )
        return run, api.get("/api/auth/me").status_code == 200
