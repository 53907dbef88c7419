"""The admin API: one module per noun, each exporting ROUTES (paths relative to `/api`).

The manager mounts API_ROUTES under `/api` behind authentication and role guards
(GET: viewer; unsafe methods: operator; handlers with `opt={"min_role": "admin"}`: admin).
Handlers get the acting user's name as the `actor: Actor` dependency for the audit log.
"""

from __future__ import annotations

from litestar.types import ControllerRouterHandler

API_ROUTES: list[ControllerRouterHandler] = []
# One line per noun module, e.g.:  from app.roles.manager.api import subnets; API_ROUTES += subnets.ROUTES
from app.roles.manager.api import auth; API_ROUTES += auth.ROUTES  # noqa: E402, E702, I001
from app.roles.manager.api import users; API_ROUTES += users.ROUTES  # noqa: E402, E702, I001
from app.roles.manager.api import audit; API_ROUTES += audit.ROUTES  # noqa: E402, E702, I001
from app.roles.manager.api import health; API_ROUTES += health.ROUTES  # noqa: E402, E702, I001
from app.roles.manager.api import scanners; API_ROUTES += scanners.ROUTES  # noqa: E402, E702, I001
from app.roles.manager.api import results; API_ROUTES += results.ROUTES  # noqa: E402, E702, I001
from app.roles.manager.api import subnets; API_ROUTES += subnets.ROUTES  # noqa: E402, E702, I001
from app.roles.manager.api import exclusions; API_ROUTES += exclusions.ROUTES  # noqa: E402, E702, I001
from app.roles.manager.api import port_lists; API_ROUTES += port_lists.ROUTES  # noqa: E402, E702, I001
from app.roles.manager.api import templates; API_ROUTES += templates.ROUTES  # noqa: E402, E702, I001
from app.roles.manager.api import scanner_groups; API_ROUTES += scanner_groups.ROUTES  # noqa: E402, E702, I001
from app.roles.manager.api import schedules; API_ROUTES += schedules.ROUTES  # noqa: E402, E702, I001
from app.roles.manager.api import runs; API_ROUTES += runs.ROUTES  # noqa: E402, E702, I001
from app.roles.manager.api import events; API_ROUTES += events.ROUTES  # noqa: E402, E702, I001
from app.roles.manager.api import backups; API_ROUTES += backups.ROUTES  # noqa: E402, E702, I001
