"""Structs of the dashboard summary."""

from __future__ import annotations

from datetime import datetime

import msgspec


class ScannerCounts(msgspec.Struct):
    online: int
    offline: int
    pending: int
    disabled: int


class RunningScan(msgspec.Struct):
    id: int
    template_name: str
    mode: str
    requested_by: str
    created_at: datetime
    total_cost: int
    done_cost: int

    @property
    def percent(self) -> int:
        return int(100 * self.done_cost / self.total_cost) if self.total_cost else 0


class PortChange(msgspec.Struct):
    id: int
    detected_at: datetime
    run_id: int
    scanner_id: int
    ip: str
    port: int
    proto: str
    change: str


class OfflineScanner(msgspec.Struct):
    id: int
    name: str
    last_heartbeat_at: datetime | None
    last_address: str | None


class EventRow(msgspec.Struct):
    """An event as the events page lists it, with its acknowledgement."""

    id: int
    at: datetime
    event_class: str
    severity: str
    message: str
    run_id: int | None
    scanner_id: int | None
    action: str | None
    acknowledged_at: datetime | None
