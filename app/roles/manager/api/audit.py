"""`/api/audit` and `/api/audit/verify`: read the hash-chained audit log and check the chain (admin only)."""

from __future__ import annotations

from typing import Annotated

from litestar import get
from litestar.params import Parameter

from app.domain.audit.service import AuditRecord, AuditVerification, list_records, verify
from app.web.deps import ConfigConn

ADMIN = {"min_role": "admin"}
SearchText = Annotated[str | None, Parameter(pattern=r"^[^\x00]*$", max_length=128)]


@get("/audit", opt=ADMIN)
async def list_audit(config_conn: ConfigConn, by: SearchText = None,
                     object_type: SearchText = None,
                     limit: Annotated[int, Parameter(ge=1, le=500)] = 50,
                     before_id: Annotated[int | None, Parameter(ge=1, le=2**62)] = None) -> list[AuditRecord]:
    return await list_records(config_conn, actor=by, object_type=object_type, limit=limit, before_id=before_id)


@get("/audit/verify", opt=ADMIN)
async def verify_audit(config_conn: ConfigConn) -> AuditVerification:
    return await verify(config_conn)


ROUTES = [list_audit, verify_audit]
