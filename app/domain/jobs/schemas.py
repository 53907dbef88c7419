"""Claim, progress and completion messages of the scanner API."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from app.domain.scanners.schemas import ScannerLimits

JobId = Annotated[int, msgspec.Meta(gt=0)]
Lease = Annotated[int, msgspec.Meta(ge=1)]


class ClaimRequest(msgspec.Struct, forbid_unknown_fields=True):
    max_jobs: Annotated[int, msgspec.Meta(ge=1, le=16)] = 1
    wait: Annotated[float, msgspec.Meta(ge=0, le=120)] = 25.0


class ClaimedJob(msgspec.Struct):
    job_id: int
    run_id: int
    lease_token: int
    targets: msgspec.Raw       # the stored JSON, passed through: [["198.18.0.0", "198.18.0.255"], ...]
    ports: str
    options: msgspec.Raw       # the stored JSON object: rate, timeout_ms, banner, tls
    cost: int
    attempt: int
    first_batch_seq: int   # numbering continues after earlier attempts' batches: (job_id, batch_seq) stays unique


class ClaimAnswer(ScannerLimits):
    """The claimed jobs plus the limits and scope the agent must apply (the same as a heartbeat answer)."""

    jobs: list[ClaimedJob]


class Progress(msgspec.Struct, forbid_unknown_fields=True):
    job_id: JobId
    lease_token: Lease
    scanned: Annotated[int, msgspec.Meta(ge=0)] = 0


class Complete(msgspec.Struct, forbid_unknown_fields=True):
    job_id: JobId
    lease_token: Lease
    status: Literal["completed", "failed"]
    batches: Annotated[int, msgspec.Meta(ge=0)] = 0
    scanned: Annotated[int, msgspec.Meta(ge=0)] = 0
    error_class: Annotated[str, msgspec.Meta(max_length=64, pattern=r"^[a-z_]*$")] | None = None
    error: Annotated[str, msgspec.Meta(max_length=2000)] | None = None


class Ack(msgspec.Struct):
    ok: bool
    duplicate: bool = False
    stored: int = 0


class Release(msgspec.Struct, forbid_unknown_fields=True):
    """An agent gives back a lease it cannot finish (it stops, or restarted and cannot resume the job)."""

    job_id: JobId
    lease_token: Lease
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=r"^[\x20-\x7e]+$")]


class Released(msgspec.Struct):
    released: bool
    action: Literal["requeued", "failed"]
