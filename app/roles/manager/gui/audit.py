"""Audit log pages (admin): newest first, filter by actor and object type, chain verification."""

from __future__ import annotations

from typing import Annotated

from litestar import Request, get
from litestar.params import FromQuery, Parameter
from litestar.response import Template

from app.domain.audit.service import list_records, verify
from app.roles.manager.gui.render import page
from app.web.deps import ConfigConn

ADMIN = {"min_role": "admin"}
PER_PAGE = 50


@get("/audit", opt=ADMIN)
async def audit_page(request: Request, config_conn: ConfigConn, by: FromQuery[str | None] = None,
                     object_type: FromQuery[str | None] = None,
                     before_id: Annotated[int | None, Parameter(ge=1, le=2**62)] = None) -> Template:
    rows = await list_records(config_conn, actor=by or None, object_type=object_type or None, limit=PER_PAGE,
                              before_id=before_id)
    older = rows[-1].id if len(rows) == PER_PAGE else None
    return page(request, "audit.html", "Audit log", rows=rows, by=by or "", object_type=object_type or "",
                older=older, first_page=before_id is None)


@get("/audit/verify", opt=ADMIN)
async def audit_verify(request: Request, config_conn: ConfigConn) -> Template:
    return page(request, "_audit_verify.html", "Audit log", result=await verify(config_conn))


ROUTES = [audit_page, audit_verify]
