"""Ingest: the scanner API under `/scanner/…`; it mounts no admin or GUI route."""

from __future__ import annotations

from litestar import Litestar

from app.config import Settings
from app.web.factory import build_role_app


def create_app(settings: Settings) -> Litestar:
    """Every route ingest serves is listed here."""
    return build_role_app(settings, "ingest", ("config", "jobs", "results"), [])
