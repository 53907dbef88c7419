"""The write path: a result batch and its ledger row commit together in the results DB, then the ack."""

from __future__ import annotations

import ipaddress
import socket
import time
from datetime import UTC, datetime
from typing import Any

from psycopg_pool import AsyncConnectionPool

from app.domain.events.service import emit
from app.domain.ingest import repository as repo
from app.domain.ingest.decoding import decode_body
from app.domain.ingest.schemas import BatchAck, Result, ResultBatch
from app.domain.ingest.tls import parse_certificate
from app.domain.jobs import repository as jobs_repo
from app.domain.jobs.schemas import Ack, Complete
from app.domain.jobs.service import locked_lease
from app.domain.scanners.schemas import AuthenticatedScanner
from app.errors import Conflict, Invalid
from app.scanner.ports import contains, parse_ports

_MAX_AGE = 7 * 86400.0
_MAX_SKEW = 300.0


def decode_batch(body: bytes) -> ResultBatch:
    return decode_body(body, ResultBatch, "result batch")


def _job_space(job: dict[str, Any]) -> tuple[dict[int, list[tuple[int, int]]], list[tuple[int, int]]]:
    by_version: dict[int, list[tuple[int, int]]] = {4: [], 6: []}
    for first, last in job["targets"]:
        a, b = ipaddress.ip_address(first), ipaddress.ip_address(last)
        by_version[a.version].append((int(a), int(b)))
    for ranges in by_version.values():
        ranges.sort()
    return by_version, parse_ports(job["ports"])


def _clean(text: str | None) -> str | None:
    return text.replace("\x00", "") if text else text


def _parse_ip(text: str) -> tuple[int, int, str] | None:
    """(version, integer, canonical text) of an address, or None. IPv4 through inet_pton: it accepts only the
    canonical dotted quad (no leading zeros, four parts), so the text stands as is, at a tenth of the cost."""
    try:
        return 4, int.from_bytes(socket.inet_pton(socket.AF_INET, text), "big"), text
    except (OSError, ValueError):
        pass
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if "%" in text:  # a scoped IPv6 address (fe80::1%eth0): not storable as `inet`, never a scan target
        return None
    return ip.version, int(ip), str(ip)


def observation_rows(batch: ResultBatch, job: dict[str, Any], scanner_id: int) -> list[tuple[object, ...]]:
    """Rows for COPY; a result outside the job's targets x ports makes the whole batch malformed."""
    targets, ports = _job_space(job)
    now = time.time()
    rows: list[tuple[object, ...]] = []
    # A batch holds many ports of few addresses (or few ports of many): each address and port is judged once.
    addresses: dict[str, str | None] = {}
    allowed_ports: dict[int, bool] = {}
    for i, r in enumerate(batch.results):
        if r.ip in addresses:
            ip = addresses[r.ip]
        else:
            parsed = _parse_ip(r.ip)
            if parsed is None:
                raise Invalid(f"results[{i}].ip: not an address: {r.ip!r}", reason="malformed")
            version, number, ip = parsed
            addresses[r.ip] = ip if contains(targets[version], number) else None
            ip = addresses[r.ip]
        port_ok = allowed_ports.get(r.port)
        if port_ok is None:
            port_ok = allowed_ports[r.port] = contains(ports, r.port)
        if ip is None or not port_ok:
            raise Invalid(f"results[{i}]: {r.ip}:{r.port} is outside the job's targets and ports",
                          reason="malformed")
        rows.append(_row(r, ip, now, job, scanner_id))
    return rows


def _row(r: Result, ip: str, now: float, job: dict[str, Any], scanner_id: int) -> tuple[object, ...]:
    # The agent's clock is trusted only within sane bounds; otherwise the receipt time stands.
    at = r.at if r.at is not None and now - _MAX_AGE < r.at < now + _MAX_SKEW else now
    subject = issuer = sha = None
    sans: list[str] | None = None
    not_after: datetime | None = None
    if r.tls_der:
        cert = parse_certificate(r.tls_der)
        subject, issuer, sans, not_after, sha = cert.subject, cert.issuer, cert.sans, cert.not_after, cert.sha256
    return (datetime.fromtimestamp(at, UTC), job["run_id"], job["id"], scanner_id, ip, r.port, "tcp", r.state,
            _clean(r.service), _clean(r.banner), _clean(subject), _clean(issuer), sans, not_after, sha, r.rtt_ms)


class IngestService:
    """Holds the pools: the batch path needs the jobs and results transactions in a strict order."""

    def __init__(self, jobs: AsyncConnectionPool, results: AsyncConnectionPool, lease_seconds: float,
                 config: AsyncConnectionPool | None = None) -> None:
        self.jobs = jobs
        self.results = results
        self.config = config
        self.lease_seconds = lease_seconds

    async def store_batch(self, scanner: AuthenticatedScanner, body: bytes) -> BatchAck:
        batch = decode_batch(body)
        async with self.jobs.connection() as jconn, jconn.transaction():
            # The job row stays locked until the results commit below: a requeue cannot slip in between.
            job = await locked_lease(jconn, batch.job_id, scanner.id, batch.lease_token)
            rows = observation_rows(batch, job, scanner.id)
            async with self.results.connection() as rconn, rconn.transaction():
                fresh = await repo.insert_ledger(rconn, batch.job_id, batch.batch_seq, batch.lease_token,
                                                 scanner.id, len(rows))
                if fresh and rows:
                    await repo.copy_observations(rconn, rows)
            # Results are committed: only now does the job's progress move (and the ack go out).
            await jobs_repo.record_progress(jconn, job, batch.scanned, self.lease_seconds)
        return BatchAck(ok=True, duplicate=not fresh, stored=len(rows) if fresh else 0)

    async def progress(self, scanner: AuthenticatedScanner, job_id: int, lease_token: int, scanned: int) -> Ack:
        async with self.jobs.connection() as jconn, jconn.transaction():
            job = await locked_lease(jconn, job_id, scanner.id, lease_token)
            await jobs_repo.record_progress(jconn, job, scanned, self.lease_seconds)
        return Ack(ok=True)

    async def complete(self, scanner: AuthenticatedScanner, msg: Complete) -> Ack:
        async with self.jobs.connection() as jconn, jconn.transaction():
            job = await locked_lease(jconn, msg.job_id, scanner.id, msg.lease_token, allow_finished=True)
            if job["status"] != "running":
                return Ack(ok=True, duplicate=True)  # a resend after a lost acknowledgement
            async with self.results.connection() as rconn, rconn.transaction():
                status = msg.status
                if status == "completed":
                    stored = await repo.batches_under_lease(rconn, msg.job_id, msg.lease_token)
                    if stored != msg.batches:
                        raise Conflict(f"job {msg.job_id}: {msg.batches} batches announced, {stored} stored",
                                       reason="batches_missing")
                # Only a completed job claims its space as covered; a failed one records partial coverage.
                await repo.insert_coverage(rconn, job["run_id"], job["id"], scanner.id, job["targets"],
                                           job["ports"], complete=status == "completed")
            await jobs_repo.finish(jconn, job, status, msg.error_class if status == "failed" else None,
                                   msg.error if status == "failed" else None)
        if status == "failed" and msg.error_class == "out_of_scope" and self.config is not None:
            # A job outside the authorised scope reached a scanner: the dispatcher or the scope is wrong.
            async with self.config.connection() as cconn, cconn.transaction():
                await emit(cconn, "job_out_of_scope", f"scanner {scanner.name} refused job {msg.job_id}: "
                           f"{msg.error or 'targets outside the authorised scope'}", severity="critical",
                           run_id=job["run_id"], job_id=msg.job_id, scanner_id=scanner.id, action="fail")
        return Ack(ok=True)
