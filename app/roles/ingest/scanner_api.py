"""`/scanner/v1/…`: the API scanners call (enrol with a token; everything else with `X-Mipo-Key`).

Bodies are decoded by `decode_body`, not Litestar's `data:` injection, so every body that does not fit is
one kind of refusal: 422 `malformed` naming the field (Litestar would answer 400 and lose the field name).
Heartbeat and claim, the calls every scanner makes all the time, are `scanner_post` calls, answered in front of
Litestar by `ScannerFront` (see scanner_route).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from litestar import Request, post
from litestar.di import NamedDependency, Provide
from litestar.types import Receive

from app.domain.ingest.decoding import decode_body
from app.domain.ingest.schemas import BatchAck
from app.domain.jobs.schemas import Ack, ClaimAnswer, ClaimRequest, Complete, Progress, Release, Released
from app.domain.jobs.service import claim_jobs, release_lease
from app.domain.scanners import service as scanners
from app.domain.scanners.schemas import AuthenticatedScanner, EnrolAnswer, EnrolRequest, Heartbeat, ScannerLimits
from app.roles.ingest.runtime import IngestRuntime, Runtime, client_address
from app.roles.ingest.scanner_route import Call, ScannerPost, authenticated_scanner, scanner_post
from app.web.deps import AppSettings, ConfigConn

MAX_BATCH_BYTES = 64 * 1024 * 1024


# Routes with `dependencies=SCANNER` declare `scanner: Scanner`: the caller, authenticated by its key.
SCANNER = {"scanner": Provide(authenticated_scanner)}
Scanner = NamedDependency[AuthenticatedScanner]


LimitFields = tuple[datetime, float, float, int, int, str, list[str]]  # ScannerLimits' fields, in order


def limits(runtime: IngestRuntime, scanner: AuthenticatedScanner) -> LimitFields:
    """What every heartbeat and claim answer tells the agent, in ScannerLimits' field order."""
    interval, lease, min_version, scope = runtime.limits
    return datetime.now(UTC), interval, lease, scanner.rate_limit, scanner.concurrency, min_version, scope


@post("/scanner/v1/enrol", status_code=200)
async def enrol(request: Request, config_conn: ConfigConn, settings: AppSettings) -> EnrolAnswer:
    data = decode_body(await request.body(), EnrolRequest, "enrolment")
    return await scanners.enrol(config_conn, data, client_address(request, settings))


@scanner_post("/scanner/v1/heartbeat", Heartbeat, "heartbeat")
def heartbeat(data: Heartbeat, scanner: AuthenticatedScanner, call: Call,
              ingest_runtime: IngestRuntime) -> ScannerLimits:
    ingest_runtime.heartbeats.record(scanner.id, data.version, data.load, data.running_jobs, scanner.address)
    return ScannerLimits(*limits(ingest_runtime, scanner))


@scanner_post("/scanner/v1/claim", ClaimRequest, "claim")
async def claim(data: ClaimRequest, scanner: AuthenticatedScanner, call: Call,
                ingest_runtime: IngestRuntime) -> ClaimAnswer:
    settings, pools, jobs = ingest_runtime.settings, ingest_runtime.pools, []

    # An agent that stops (or whose link drops) while parked here must not be handed a job: nobody would
    # receive it and it would sit out a whole lease. The body is read, so the next ASGI message is the
    # client's disconnect; watch for it while the long poll waits.
    gone = asyncio.ensure_future(_client_gone(call.receive))

    async def may_claim() -> bool:
        # Asked again before every claim of a long poll: a scanner drained (or disabled, or its key revoked)
        # while it waits gets nothing (or its 403), not a job that appeared meanwhile.
        if gone.done():
            return False
        return (await call.authenticate(ingest_runtime)).status != "draining"

    try:
        if scanner.status != "draining":  # a draining scanner finishes what it has and takes nothing new
            jobs = await claim_jobs(pools.get("jobs"), pools.get("results"), ingest_runtime.notifier, scanner.id,
                                    data.max_jobs, min(data.wait, settings.scanner.claim_long_poll),
                                    settings.scanner.lease_seconds, may_claim, gone)
    finally:
        gone.cancel()
    return ClaimAnswer(*limits(ingest_runtime, scanner), jobs)


async def _client_gone(receive: Receive) -> None:
    """Returns once the client has disconnected (after the body, only `http.disconnect` can arrive)."""
    while (await receive())["type"] != "http.disconnect":
        pass


@post("/scanner/v1/batches", dependencies=SCANNER, status_code=200, request_max_body_size=MAX_BATCH_BYTES)
async def result_batch(request: Request, scanner: Scanner, ingest_runtime: Runtime) -> BatchAck:
    # Raw body decoded by msgspec in the service: a bad batch is 422 `malformed`, never a crash.
    assert ingest_runtime.service is not None
    return await ingest_runtime.service.store_batch(scanner, await request.body())


@post("/scanner/v1/progress", dependencies=SCANNER, status_code=200)
async def progress(request: Request, scanner: Scanner, ingest_runtime: Runtime) -> Ack:
    data = decode_body(await request.body(), Progress, "progress")
    assert ingest_runtime.service is not None
    return await ingest_runtime.service.progress(scanner, data.job_id, data.lease_token, data.scanned)


@post("/scanner/v1/complete", dependencies=SCANNER, status_code=200)
async def complete(request: Request, scanner: Scanner, ingest_runtime: Runtime) -> Ack:
    data = decode_body(await request.body(), Complete, "completion")
    assert ingest_runtime.service is not None
    return await ingest_runtime.service.complete(scanner, data)


@post("/scanner/v1/release", dependencies=SCANNER, status_code=200)
async def release(request: Request, scanner: Scanner, ingest_runtime: Runtime) -> Released:
    # A stopping (or restarted) agent gives back the jobs it will not finish, instead of leaving them to expire.
    data = decode_body(await request.body(), Release, "release")
    pools = ingest_runtime.pools
    return await release_lease(pools.get("jobs"), pools.get("config"), scanner, data)


# The hot calls, which `ScannerFront` answers before Litestar; as routes they are listed in ROUTES as well.
HOT: list[ScannerPost[Any]] = [heartbeat, claim]
ROUTES = [enrol, heartbeat.route, claim.route, result_batch, progress, complete, release]
