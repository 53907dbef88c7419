"""Settings and credentials pointing the app at the test PostgreSQL server."""

from __future__ import annotations

from pathlib import Path

from app.config import Settings, parse_settings
from tests.support.postgres import OWNER_ROLE, SERVICE_ROLES, PostgresServer, role_password


def write_credentials(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for role in (OWNER_ROLE, *SERVICE_ROLES):
        path = directory / f"{role}-password"
        path.write_text(role_password(role) + "\n")
        path.chmod(0o600)


def settings_document(server: PostgresServer, databases: dict[str, str], role: str,
                       **overrides: object) -> dict[str, object]:
    """A settings document as a role on one host would have it (`role`: the service role to log in as)."""
    def db(kind: str) -> dict[str, object]:
        return {
            "name": databases[kind], "host": "127.0.0.1", "port": server.port, "user": role,
            "password_credential": f"{role}-password", "owner": OWNER_ROLE,
            "owner_password_credential": f"{OWNER_ROLE}-password", "sslmode": "disable",
        }

    data: dict[str, object] = {
        "databases": {k: db(k) for k in ("config", "jobs", "results")},
        "scope": {"authorised": ["127.0.0.0/8", "198.18.0.0/24"]},
        "session": {"secure_cookies": False},
    }
    data.update(overrides)
    return data


def make_settings(server: PostgresServer, databases: dict[str, str], credentials: Path, role: str,
                  **overrides: object) -> Settings:
    return parse_settings(settings_document(server, databases, role, **overrides), str(credentials))
