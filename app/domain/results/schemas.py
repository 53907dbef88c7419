"""Read models of results history: observations, changes, cross-vantage rows, host history, runs."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import msgspec

ChangeKind = Literal["opened", "closed", "service_changed", "certificate_changed"]
CHANGE_KINDS: tuple[str, ...] = ("opened", "closed", "service_changed", "certificate_changed")


class ObservationRead(msgspec.Struct):
    time: datetime
    run_id: int
    job_id: int
    scanner_id: int
    ip: str
    port: int
    proto: str
    state: str
    service: str | None
    banner: str | None
    tls_subject: str | None
    tls_issuer: str | None
    tls_sans: list[str] | None
    tls_not_after: datetime | None
    tls_sha256: str | None
    rtt_ms: float | None


class PortChangeRead(msgspec.Struct):
    id: int
    detected_at: datetime
    run_id: int
    previous_run_id: int | None
    scanner_id: int
    ip: str
    port: int
    proto: str
    change: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None


class OpenPortRead(msgspec.Struct):
    """One port open at a point in time, as last observed from one scanner."""

    scanner_id: int
    ip: str
    port: int
    proto: str
    observed_at: datetime
    run_id: int
    service: str | None
    banner: str | None
    tls_sha256: str | None


class VantageDifference(msgspec.Struct):
    """An (address, port) of a mirror run that some scanners found open and others covered but not open."""

    ip: str
    port: int
    proto: str
    open_from: list[int]
    closed_from: list[int]
    not_covered_by: list[int]


class RunSummaryRead(msgspec.Struct):
    run_id: int
    scanner_id: int
    open_ports: int
    hosts_up: int
    changes: int
    computed_at: datetime


class PortHistory(msgspec.Struct):
    """One (scanner, port) of a host: when it was first and last seen open, and its current known state."""

    scanner_id: int
    port: int
    proto: str
    first_seen: datetime | None
    last_seen: datetime | None
    observations: int
    state: str | None
    service: str | None


class HostHistory(msgspec.Struct):
    """Ports per scanner (first/last seen, current state), changes newest first, latest observations."""

    ip: str
    ports: list[PortHistory]
    changes: list[PortChangeRead]
    observations: list[ObservationRead]


class ChangeFilter(msgspec.Struct):
    """Filters of the changes list; None means "any"."""

    run_ids: list[int] | None = None
    scanner_id: int | None = None
    subnet: str | None = None
    port: int | None = None
    change: str | None = None
    since: datetime | None = None
    until: datetime | None = None
