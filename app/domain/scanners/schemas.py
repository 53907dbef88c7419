"""Scanner API and admin API shapes (msgspec Structs)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

Name = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]


class ScannerRead(msgspec.Struct):
    id: int
    name: str
    description: str
    status: str
    online: bool
    host_id: str | None
    version: str | None
    last_heartbeat_at: datetime | None
    last_address: str | None
    load: float | None
    running_jobs: int
    rate_limit: int
    concurrency: int
    bound_network: str | None
    created_at: datetime
    # Its last reported agent version is older than the appliance requires: it heartbeats but takes no jobs.
    outdated: bool = False


class ScannerCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    description: str = ""
    rate_limit: Annotated[int, msgspec.Meta(gt=0)] = 20000
    concurrency: Annotated[int, msgspec.Meta(gt=0, le=60000)] = 2000
    bind_network: str | None = None   # the key will only be accepted from this network


class ScannerUpdate(msgspec.Struct, forbid_unknown_fields=True):
    description: str | None = None
    rate_limit: Annotated[int, msgspec.Meta(gt=0)] | None = None
    concurrency: Annotated[int, msgspec.Meta(gt=0, le=60000)] | None = None


class TokenCreate(msgspec.Struct, forbid_unknown_fields=True):
    bind_network: str | None = None
    ttl_seconds: Annotated[float, msgspec.Meta(gt=0, le=7 * 86400)] | None = None


class TokenRead(msgspec.Struct):
    id: int
    scanner_id: int
    bind_network: str | None
    created_by: str
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None
    used_from: str | None
    revoked_at: datetime | None


class Enrolment(msgspec.Struct):
    """Shown once: the token and the command that installs and enrols a scanner host."""

    scanner: ScannerRead
    token_id: int
    token: str
    expires_at: datetime
    install_command: str
    ca_sha256: str | None


# Stored as PostgreSQL text and shown to operators: no NUL (text cannot hold it) nor other control characters.
_PRINTABLE = r"^[^\x00-\x1f\x7f]*$"


class EnrolRequest(msgspec.Struct, forbid_unknown_fields=True):
    token: Annotated[str, msgspec.Meta(max_length=200)]
    host_id: Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$")]
    hostname: Annotated[str, msgspec.Meta(max_length=255, pattern=_PRINTABLE)] = ""
    version: Annotated[str, msgspec.Meta(max_length=64, pattern=_PRINTABLE)] = ""


class EnrolAnswer(msgspec.Struct):
    scanner_id: int
    scanner_name: str
    key: str


class Heartbeat(msgspec.Struct, forbid_unknown_fields=True):
    # Printable as at enrolment: one NUL in the shared buffer would fail the single UPDATE that writes every
    # scanner's beat.
    version: Annotated[str, msgspec.Meta(max_length=64, pattern=_PRINTABLE)] = ""
    load: float = 0.0
    running_jobs: Annotated[int, msgspec.Meta(ge=0)] = 0


class AuthenticatedScanner(msgspec.Struct, frozen=True):
    id: int
    name: str
    status: str
    rate_limit: int
    concurrency: int
    address: str


class ScannerLimits(msgspec.Struct):
    """What every heartbeat and claim answer tells the agent."""

    server_time: datetime
    heartbeat_interval: float
    lease_seconds: float
    rate_limit: int
    concurrency: int
    min_version: str
    scope: list[str]
