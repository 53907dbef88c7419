"""Build a role's Litestar app: its routes, its database pools, shared handlers and health."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, YamlRenderPlugin
from litestar.types import ControllerRouterHandler

from app import __version__
from app.config import DatabaseName, Settings
from app.db.connect import Pools, open_pools
from app.web.deps import TRANSACTION_DEPENDENCIES
from app.web.health import health
from app.web.problems import EXCEPTION_HANDLERS


def build_role_app(
    settings: Settings,
    role: str,
    databases: tuple[DatabaseName, ...],
    route_handlers: Sequence[ControllerRouterHandler],
    *,
    openapi: bool = False,
    extra_dependencies: dict[str, Provide] | None = None,
    **kwargs: Any,
) -> Litestar:
    """One role's app: `route_handlers` is its whole attack surface besides `/health`."""
    pools = Pools()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        opened = await open_pools(settings, databases)
        for name, pool in opened.opened().items():
            setattr(pools, name, pool)
        try:
            yield
        finally:
            await pools.close()

    dependencies = {
        "settings": Provide(lambda: settings, use_cache=True, sync_to_thread=False),
        "pools": Provide(lambda: pools, use_cache=True, sync_to_thread=False),
        # Not "role": a dependency name shadows a body field of that name (users have a `role`) → 500.
        "role_name": Provide(lambda: role, use_cache=True, sync_to_thread=False),
        **TRANSACTION_DEPENDENCIES,
        **(extra_dependencies or {}),
    }
    openapi_config = (
        # Only the JSON and YAML documents: the HTML viewers would load scripts from third-party CDNs.
        OpenAPIConfig(title=f"mipo {role} API", version=__version__, path="/api/schema",
                      render_plugins=[JsonRenderPlugin(), YamlRenderPlugin()])
        if openapi
        else None
    )
    logging.getLogger("mipo").setLevel(logging.INFO)
    app = Litestar(
        route_handlers=[health, *route_handlers],
        dependencies=dependencies,
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        lifespan=[lifespan],
        openapi_config=openapi_config,
        **kwargs,
    )
    # Guards and middleware cannot take dependencies; they reach the pools through app state.
    app.state.pools = pools
    return app
