"""The backup service's internal HTTP API (no Traefik route; only the manager calls it)."""

from __future__ import annotations

from litestar import Litestar

from app.config import Settings
from app.web.factory import build_role_app


def create_app(settings: Settings) -> Litestar:
    """Every route the backup API serves is listed here."""
    return build_role_app(settings, "backup", ("config", "jobs", "results"), [])
