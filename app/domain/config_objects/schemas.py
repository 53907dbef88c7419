"""Read/create/update structs of the configuration objects."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f]+$")]
Text = Annotated[str, msgspec.Meta(max_length=2000, pattern=r"^[^\x00]*$")]  # PostgreSQL text has no NUL
Cidr = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Id = Annotated[int, msgspec.Meta(ge=1, le=2**62)]
IdList = Annotated[list[Id], msgspec.Meta(max_length=10_000)]
Mode = Literal["mirror", "split"]


class SubnetRead(msgspec.Struct):
    id: int
    name: str
    cidr: str
    description: str
    addresses: int
    created_at: datetime


class SubnetCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    cidr: Cidr  # a CIDR or a single address (stored as /32 or /128)
    description: Text = ""


class SubnetUpdate(msgspec.Struct, forbid_unknown_fields=True):
    name: Name | None = None
    cidr: Cidr | None = None
    description: Text | None = None


class SubnetGroupRead(msgspec.Struct):
    id: int
    name: str
    description: str
    subnet_ids: list[int]


class SubnetGroupCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    description: Text = ""
    subnet_ids: IdList = []


class SubnetGroupUpdate(msgspec.Struct, forbid_unknown_fields=True):
    name: Name | None = None
    description: Text | None = None
    subnet_ids: IdList | None = None


class ExclusionRead(msgspec.Struct):
    id: int
    cidr: str
    reason: str
    template_id: int | None  # None: applies to every template
    created_at: datetime


class ExclusionCreate(msgspec.Struct, forbid_unknown_fields=True):
    cidr: Cidr
    reason: Text = ""
    template_id: Id | None = None


class ExclusionUpdate(msgspec.Struct, forbid_unknown_fields=True):
    cidr: Cidr | None = None
    reason: Text | None = None


class PortListRead(msgspec.Struct):
    id: int
    name: str
    spec: str
    description: str
    builtin: bool
    port_count: int
    compact: str  # the spec expanded and merged, e.g. "1-1024,8080"


class PortListCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    spec: Annotated[str, msgspec.Meta(min_length=1, max_length=10_000)]
    description: Text = ""


class PortListUpdate(msgspec.Struct, forbid_unknown_fields=True):
    name: Name | None = None
    spec: Annotated[str, msgspec.Meta(min_length=1, max_length=10_000)] | None = None
    description: Text | None = None


class TemplateRead(msgspec.Struct):
    id: int
    name: str
    description: str
    port_list_id: int
    scanner_group_id: int
    rate: int
    timeout_ms: int
    banner: bool
    tls: bool
    subnet_ids: list[int]
    subnet_group_ids: list[int]
    created_at: datetime
    updated_at: datetime


Rate = Annotated[int, msgspec.Meta(ge=1, le=10_000_000)]
Timeout = Annotated[int, msgspec.Meta(ge=50, le=60_000)]


class TemplateCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    port_list_id: Id
    scanner_group_id: Id
    subnet_ids: IdList = []
    subnet_group_ids: IdList = []
    description: Text = ""
    rate: Rate = 5000
    timeout_ms: Timeout = 1000
    banner: bool = True
    tls: bool = True


class TemplateUpdate(msgspec.Struct, forbid_unknown_fields=True):
    name: Name | None = None
    port_list_id: Id | None = None
    scanner_group_id: Id | None = None
    subnet_ids: IdList | None = None
    subnet_group_ids: IdList | None = None
    description: Text | None = None
    rate: Rate | None = None
    timeout_ms: Timeout | None = None
    banner: bool | None = None
    tls: bool | None = None


class TemplatePreview(msgspec.Struct):
    """What a run of the template would scan right now."""

    addresses: int
    ports: int
    probes: int
    ranges: int
    excluded_addresses: int


class ScannerGroupRead(msgspec.Struct):
    id: int
    name: str
    mode: Mode
    description: str
    scanner_ids: list[int]
    created_at: datetime


class ScannerGroupCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    mode: Mode
    description: Text = ""
    scanner_ids: IdList = []


class ScannerGroupUpdate(msgspec.Struct, forbid_unknown_fields=True):
    name: Name | None = None
    mode: Mode | None = None
    description: Text | None = None
    scanner_ids: IdList | None = None


class ScheduleRead(msgspec.Struct):
    id: int
    name: str
    template_id: int
    cron: str
    timezone: str
    jitter_seconds: int
    enabled: bool
    next_run_at: datetime | None  # the next due time (the run starts up to jitter_seconds later)
    last_run_at: datetime | None
    created_at: datetime
    updated_at: datetime


Jitter = Annotated[int, msgspec.Meta(ge=0, le=86_400)]


class ScheduleCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    template_id: Id
    cron: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    timezone: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] = "UTC"
    jitter_seconds: Jitter = 0
    enabled: bool = True


class ScheduleUpdate(msgspec.Struct, forbid_unknown_fields=True):
    name: Name | None = None
    template_id: Id | None = None
    cron: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | None = None
    timezone: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None
    jitter_seconds: Jitter | None = None
    enabled: bool | None = None
