"""Ingest: the scanner API under `/scanner/…`; it mounts no admin or GUI route."""

from __future__ import annotations

from litestar import Litestar
from litestar.di import Provide

from app.config import Settings
from app.roles.ingest import install, scanner_api
from app.roles.ingest.runtime import IngestRuntime
from app.roles.ingest.scanner_route import ScannerFront
from app.web.factory import build_role_app


def create_app(settings: Settings) -> Litestar:
    """Every route ingest serves is listed here: `/health` plus the scanner API and the installer."""
    runtime = IngestRuntime.create(settings)
    app = build_role_app(
        settings, "ingest", ("config", "jobs", "results"),
        [*scanner_api.ROUTES, *install.ROUTES],
        extra_dependencies={"ingest_runtime": Provide(lambda: runtime, use_cache=True, sync_to_thread=False)},
        on_startup=[runtime.start], on_shutdown=[runtime.stop],
    )
    app.state.ingest_runtime = runtime  # for the scanner_post routes, which take no dependencies
    return app


def create_asgi(settings: Settings) -> ScannerFront:
    """What `serve ingest` runs: create_app()'s app, with its hot scanner calls (already among its routes)
    answered in front of it, without Litestar's per-request machinery (see scanner_route)."""
    app = create_app(settings)
    return ScannerFront(app, app.state.ingest_runtime, scanner_api.HOT)
