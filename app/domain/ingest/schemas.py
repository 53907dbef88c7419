"""Result batches as the agent sends them (decoded with msgspec straight from the request body)."""

from __future__ import annotations

from typing import Annotated

import msgspec

Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]


class Result(msgspec.Struct, forbid_unknown_fields=True):
    ip: Annotated[str, msgspec.Meta(max_length=45)]
    port: Port
    at: float | None = None                # unix time the port answered (agent clock)
    rtt_ms: float | None = None
    state: Annotated[str, msgspec.Meta(pattern=r"^(open)$")] = "open"
    service: Annotated[str, msgspec.Meta(max_length=32)] | None = None
    banner: Annotated[str, msgspec.Meta(max_length=1024)] | None = None
    tls_der: Annotated[bytes, msgspec.Meta(max_length=65536)] | None = None   # base64 in JSON


class ResultBatch(msgspec.Struct, forbid_unknown_fields=True):
    job_id: Annotated[int, msgspec.Meta(gt=0)]
    batch_seq: Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)]
    lease_token: Annotated[int, msgspec.Meta(ge=1)]
    results: Annotated[list[Result], msgspec.Meta(max_length=100_000)]
    scanned: Annotated[int, msgspec.Meta(ge=0)] = 0


class BatchAck(msgspec.Struct):
    ok: bool
    duplicate: bool
    stored: int
