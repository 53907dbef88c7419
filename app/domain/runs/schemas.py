"""Run and job structs the admin API returns and accepts."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec

Id = Annotated[int, msgspec.Meta(ge=1, le=2**62)]


class RunRequestCreate(msgspec.Struct, forbid_unknown_fields=True):
    template_id: Id


class RunRequestRead(msgspec.Struct):
    id: int
    template_id: int
    requested_by: str
    requested_at: datetime
    run_id: int | None


class RunRead(msgspec.Struct):
    id: int
    template_id: int
    template_name: str
    schedule_id: int | None
    due_at: datetime | None
    run_request_id: int | None
    status: str
    mode: str
    total_cost: int
    done_cost: int
    requested_by: str
    created_at: datetime
    finished_at: datetime | None
    jobs: dict[str, int] = {}


class JobRead(msgspec.Struct):
    id: int
    run_id: int
    scanner_id: int | None
    status: str
    targets: list[list[str]]
    ports: str
    options: dict[str, Any]
    cost: int
    done_cost: int
    lease_token: int
    lease_expires_at: datetime | None
    attempts: int
    max_attempts: int
    estimate_seconds: float
    last_error: str | None
    error_class: str | None
    stall_class: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
