"""The manager: GUI and admin API for operators. It never answers `/scanner/…`."""

from __future__ import annotations

from litestar import Litestar

from app.config import Settings
from app.web.factory import build_role_app


def create_app(settings: Settings) -> Litestar:
    """Every route the manager serves is listed here."""
    return build_role_app(settings, "manager", ("config", "jobs", "results"), [], openapi=True)
