"""`/api/results…`, `/api/changes`, `/api/hosts/{ip}`, `/api/exports/…`: results history and streamed exports."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

import msgspec
from litestar import get
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, Parameter
from litestar.response import Stream
from psycopg import AsyncConnection

from app.db.connect import Pools
from app.domain.results import exports, service
from app.domain.results.schemas import (
    ChangeFilter,
    HostHistory,
    ObservationRead,
    OpenPortRead,
    PortChangeRead,
    RunSummaryRead,
    VantageDifference,
)
from app.web.deps import AppSettings, JobsConn, ResultsConn
from app.web.params import Id, OptId

OptPort = Annotated[int | None, Parameter(ge=0, le=65535)]
Limit = Annotated[int, Parameter(ge=1, le=10_000)]
OptText = FromQuery[str | None]
OptTime = FromQuery[datetime | None]
MEDIA = {"csv": "text/csv; charset=utf-8", "json": "application/json"}


class ObservationPage(msgspec.Struct):
    items: list[ObservationRead]
    # Pass these back as after_ip/after_port/after_time for the next page; null when this was the last.
    next: dict[str, object] | None


class ChangePage(msgspec.Struct):
    items: list[PortChangeRead]
    next_before_id: int | None


async def _template_runs(jobs_conn: AsyncConnection, template_id: int | None) -> list[int] | None:
    if template_id is None:
        return None
    cur = await jobs_conn.execute("SELECT id FROM scan_runs WHERE template_id = %s", (template_id,))
    return [int(r[0]) for r in await cur.fetchall()]


async def _change_filter(jobs_conn: AsyncConnection, run_id: int | None, template_id: int | None,
                         scanner_id: int | None, subnet: str | None, port: int | None, change: str | None,
                         since: datetime | None, until: datetime | None) -> ChangeFilter:
    runs = await _template_runs(jobs_conn, template_id)
    if run_id is not None:
        runs = [run_id] if runs is None or run_id in runs else []
    return service.change_filter(runs, scanner_id, subnet, port, change, since, until)


@get("/results/runs")
async def list_run_summaries(results_conn: ResultsConn, run_id: OptId = None, before_run: OptId = None,
                             limit: Limit = 100) -> list[RunSummaryRead]:
    """Per run and scanner: open ports, hosts up and changes, newest run first."""
    return await service.list_summaries(results_conn, run_id, before_run, limit)


@get("/results")
async def list_results(results_conn: ResultsConn, run_id: OptId = None, scanner_id: OptId = None,
                       subnet: OptText = None, port: OptPort = None, since: OptTime = None,
                       until: OptTime = None, after_ip: OptText = None, after_port: OptPort = None,
                       after_time: OptTime = None, limit: Limit = 1000) -> ObservationPage:
    """Observations (what was found open), by address, port and time; keyset-paged."""
    after = (after_ip, after_port or 0, after_time or datetime.min.replace(tzinfo=UTC)) if after_ip else None
    params = service.observation_params(run_id, scanner_id, subnet, port, since, until, after)
    items = await service.list_observations(results_conn, params, limit)
    last = items[-1] if len(items) == limit else None
    nxt = {"after_ip": last.ip, "after_port": last.port, "after_time": last.time} if last else None
    return ObservationPage(items, nxt)


@get("/changes")
async def list_changes(results_conn: ResultsConn, jobs_conn: JobsConn, run_id: OptId = None,
                       template_id: OptId = None, scanner_id: OptId = None, subnet: OptText = None,
                       port: OptPort = None, change: OptText = None, since: OptTime = None,
                       until: OptTime = None, before_id: OptId = None, limit: Limit = 500) -> ChangePage:
    """Port state changes, newest first, filtered by run, template, scanner, subnet, port, kind and time."""
    f = await _change_filter(jobs_conn, run_id, template_id, scanner_id, subnet, port, change, since, until)
    items = await service.list_changes(results_conn, f, limit, before_id)
    return ChangePage(items, items[-1].id if len(items) == limit else None)


@get("/results/runs/{run_id:int}/cross-vantage")
async def cross_vantage(results_conn: ResultsConn, run_id: Id, include_uncovered: FromQuery[bool] = False,
                        after_ip: OptText = None, after_port: OptPort = None,
                        limit: Limit = 1000) -> list[VantageDifference]:
    """Where the scanners of a mirror run disagree: open from some, covered-but-not-open from others."""
    return await service.cross_vantage(results_conn, run_id, include_uncovered=include_uncovered,
                                       after_ip=after_ip, after_port=after_port, limit=limit)


@get("/results/point-in-time")
async def point_in_time(results_conn: ResultsConn, settings: AppSettings, at: FromQuery[datetime],
                        scanner_id: OptId = None, subnet: OptText = None, port: OptPort = None,
                        after_ip: OptText = None, after_port: OptPort = None, after_scanner: OptId = None,
                        limit: Limit = 1000) -> list[OpenPortRead]:
    """What was open at `at` from one scanner (or each): the latest covered state at or before it."""
    return await service.point_in_time(results_conn, at, scanner_id=scanner_id, subnet=subnet, port=port,
                                       lookback_days=settings.retention.observations_days, after_ip=after_ip,
                                       after_port=after_port, after_scanner=after_scanner, limit=limit)


@get("/hosts/{ip:str}")
async def host_history(results_conn: ResultsConn, ip: FromPath[str]) -> HostHistory:
    """Everything known about one address: its ports per scanner, their changes, recent observations."""
    return await service.host_history(results_conn, ip)


def _stream(body: object, fmt: Literal["csv", "json"], name: str) -> Stream:
    return Stream(body, media_type=MEDIA[fmt],  # type: ignore[arg-type]
                  headers={"Content-Disposition": f'attachment; filename="{name}.{fmt}"'})


def _export_results(pools: Pools, kind: Literal["csv", "json"], run_id: int | None, scanner_id: int | None,
                    subnet: str | None, port: int | None, since: datetime | None, until: datetime | None) -> Stream:
    params = service.observation_params(run_id, scanner_id, subnet, port, since, until)
    body = exports.from_pool(pools.get("results"), lambda conn: exports.observations(conn, params, kind))
    return _stream(body, kind, "results")


@get("/exports/results.csv")
async def export_results_csv(pools: NamedDependency[Pools], run_id: OptId = None, scanner_id: OptId = None,
                             subnet: OptText = None, port: OptPort = None, since: OptTime = None,
                             until: OptTime = None) -> Stream:
    """All matching observations as CSV, streamed from a server-side cursor."""
    return _export_results(pools, "csv", run_id, scanner_id, subnet, port, since, until)


@get("/exports/results.json")
async def export_results_json(pools: NamedDependency[Pools], run_id: OptId = None, scanner_id: OptId = None,
                              subnet: OptText = None, port: OptPort = None, since: OptTime = None,
                              until: OptTime = None) -> Stream:
    """All matching observations as one JSON array, streamed from a server-side cursor."""
    return _export_results(pools, "json", run_id, scanner_id, subnet, port, since, until)


async def _export_changes(pools: Pools, jobs_conn: AsyncConnection, kind: Literal["csv", "json"],
                          run_id: int | None, template_id: int | None, scanner_id: int | None, subnet: str | None,
                          port: int | None, change: str | None, since: datetime | None,
                          until: datetime | None) -> Stream:
    f = await _change_filter(jobs_conn, run_id, template_id, scanner_id, subnet, port, change, since, until)
    body = exports.from_pool(pools.get("results"), lambda conn: exports.changes(conn, f, kind))
    return _stream(body, kind, "changes")


@get("/exports/changes.csv")
async def export_changes_csv(pools: NamedDependency[Pools], jobs_conn: JobsConn, run_id: OptId = None,
                             template_id: OptId = None, scanner_id: OptId = None, subnet: OptText = None,
                             port: OptPort = None, change: OptText = None, since: OptTime = None,
                             until: OptTime = None) -> Stream:
    """All matching changes as CSV, streamed."""
    return await _export_changes(pools, jobs_conn, "csv", run_id, template_id, scanner_id, subnet, port, change,
                                 since, until)


@get("/exports/changes.json")
async def export_changes_json(pools: NamedDependency[Pools], jobs_conn: JobsConn, run_id: OptId = None,
                              template_id: OptId = None, scanner_id: OptId = None, subnet: OptText = None,
                              port: OptPort = None, change: OptText = None, since: OptTime = None,
                              until: OptTime = None) -> Stream:
    """All matching changes as one JSON array, streamed."""
    return await _export_changes(pools, jobs_conn, "json", run_id, template_id, scanner_id, subnet, port, change,
                                 since, until)


ROUTES = [list_run_summaries, list_results, list_changes, cross_vantage, point_in_time, host_history,
          export_results_csv, export_results_json, export_changes_csv, export_changes_json]
