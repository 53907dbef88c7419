"""Repair request structs."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

RepairAction = Literal["redispatch", "reassign", "fail", "drain"]


class ReassignBody(msgspec.Struct, forbid_unknown_fields=True):
    # None: the dispatcher picks the least-loaded online scanner of the run's group.
    scanner_id: Annotated[int, msgspec.Meta(ge=1, le=2**62)] | None = None


class RepairRead(msgspec.Struct):
    id: int
    action: str
    job_id: int | None
    scanner_id: int | None
    requested_by: str
    requested_at: datetime
    done_at: datetime | None
    outcome: str | None
