"""Results queries with their input rules: filters checked, pages bounded, unknown hosts a clear 404."""

from __future__ import annotations

import ipaddress
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection

from app.domain.results import repository as repo
from app.domain.results.schemas import (
    CHANGE_KINDS,
    ChangeFilter,
    HostHistory,
    ObservationRead,
    OpenPortRead,
    PortChangeRead,
    RunSummaryRead,
    VantageDifference,
)
from app.errors import Invalid, NotFound

HOST_CHANGES_LIMIT = 500
HOST_OBSERVATIONS_LIMIT = 200


def parse_subnet(subnet: str | None) -> str | None:
    if subnet is None or subnet == "":
        return None
    try:
        return str(ipaddress.ip_network(subnet.strip(), strict=False))
    except ValueError:
        raise Invalid(f"subnet: expected a CIDR such as 198.18.0.0/24, got {subnet!r}", reason="bad_subnet",
                      field="subnet") from None


def parse_ip(ip: str, field: str = "ip") -> str:
    try:
        return str(ipaddress.ip_address(ip.strip()))
    except ValueError:
        raise Invalid(f"{field}: expected an IPv4 or IPv6 address, got {ip!r}", reason="bad_address",
                      field=field) from None


def check_change(change: str | None) -> str | None:
    if change is not None and change not in CHANGE_KINDS:
        raise Invalid(f"change: expected one of {', '.join(CHANGE_KINDS)}, got {change!r}", reason="bad_change",
                      field="change")
    return change


def check_window(since: datetime | None, until: datetime | None) -> None:
    if since is not None and until is not None and since >= until:
        raise Invalid("since must be before until", reason="bad_time_window", field="since")


def observation_params(run_id: int | None, scanner_id: int | None, subnet: str | None, port: int | None,
                       since: datetime | None, until: datetime | None,
                       after: tuple[str, int, datetime] | None = None) -> dict[str, Any]:
    check_window(since, until)
    return {"run": run_id, "scanner": scanner_id, "subnet": parse_subnet(subnet), "port": port,
            "since": since, "until": until,
            "after_ip": parse_ip(after[0], "after_ip") if after else None,
            "after_port": after[1] if after else None, "after_time": after[2] if after else None}


async def list_observations(conn: AsyncConnection, params: dict[str, Any], limit: int) -> list[ObservationRead]:
    return await repo.list_observations(conn, params, limit)


def change_filter(run_ids: list[int] | None, scanner_id: int | None, subnet: str | None, port: int | None,
                  change: str | None, since: datetime | None, until: datetime | None) -> ChangeFilter:
    check_window(since, until)
    return ChangeFilter(run_ids=run_ids, scanner_id=scanner_id, subnet=parse_subnet(subnet), port=port,
                        change=check_change(change), since=since, until=until)


async def list_changes(conn: AsyncConnection, f: ChangeFilter, limit: int,
                       before_id: int | None = None) -> list[PortChangeRead]:
    if f.run_ids is not None and not f.run_ids:
        return []  # a template with no runs has no changes
    return await repo.list_changes(conn, f, limit, before_id)


async def list_summaries(conn: AsyncConnection, run_id: int | None, before_run: int | None,
                         limit: int) -> list[RunSummaryRead]:
    return await repo.list_summaries(conn, run_id, before_run, limit)


async def cross_vantage(conn: AsyncConnection, run_id: int, *, include_uncovered: bool = False,
                        after_ip: str | None = None, after_port: int | None = None,
                        limit: int = 1000) -> list[VantageDifference]:
    after = (parse_ip(after_ip, "after_ip"), after_port or 0) if after_ip else None
    return await repo.cross_vantage(conn, run_id, include_uncovered, after, limit)


async def point_in_time(conn: AsyncConnection, at: datetime, *, scanner_id: int | None = None,
                        subnet: str | None = None, port: int | None = None, lookback_days: int = 90,
                        after_ip: str | None = None, after_port: int | None = None,
                        after_scanner: int | None = None, limit: int = 1000) -> list[OpenPortRead]:
    after = (parse_ip(after_ip, "after_ip"), after_port or 0, after_scanner or 0) if after_ip else None
    return await repo.point_in_time(conn, at, scanner_id, parse_subnet(subnet), port, lookback_days, after, limit)


async def host_history(conn: AsyncConnection, ip: str) -> HostHistory:
    address = parse_ip(ip)
    ports = await repo.host_ports(conn, address)
    changes = await repo.list_changes(conn, ChangeFilter(subnet=address), HOST_CHANGES_LIMIT)
    observations = await repo.host_observations(conn, address, HOST_OBSERVATIONS_LIMIT)
    if not ports and not changes:
        raise NotFound(f"nothing is known about {address}: no scan found it open", reason="unknown_host")
    return HostHistory(ip=address, ports=ports, changes=changes, observations=observations)
