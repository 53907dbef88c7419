"""Small helpers the configuration services share: audit snapshots, target validation, changed fields."""

from __future__ import annotations

import ipaddress
from typing import Any

import msgspec
from psycopg import AsyncConnection

from app.domain.audit.service import record
from app.errors import Invalid


def snapshot(obj: msgspec.Struct | None) -> dict[str, Any] | None:
    return None if obj is None else msgspec.to_builtins(obj)


async def audit(conn: AsyncConnection, actor: str, action: str, noun: str, object_id: int,
                before: msgspec.Struct | None, after: msgspec.Struct | None) -> None:
    await record(conn, actor, action, noun, object_id, snapshot(before), snapshot(after))


def changes(data: msgspec.Struct, *, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """Fields the client sent (None means: leave unchanged)."""
    return {k: v for k, v in msgspec.structs.asdict(data).items() if v is not None and k not in exclude}


def normalise_cidr(value: str, field: str = "cidr") -> str:
    """'198.18.0.7/24' -> '198.18.0.0/24'; a single address -> /32 or /128. Ranges are not CIDRs."""
    try:
        return str(ipaddress.ip_network(value.strip(), strict=False))
    except ValueError:
        raise Invalid(f"{value!r} is not an IPv4/IPv6 address or CIDR (e.g. 198.18.0.0/24, 2001:db8::/64)",
                      reason="invalid_cidr", field=field) from None
