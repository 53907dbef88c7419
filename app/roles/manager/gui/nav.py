"""The navigation: one entry per page that exists, shown only to roles allowed to open it."""

from __future__ import annotations

from typing import NamedTuple

from app.domain.sessions.service import SessionUser
from app.domain.users.schemas import ROLE_RANK


class NavItem(NamedTuple):
    href: str
    label: str
    section: str
    min_role: str = "viewer"


NAV: tuple[NavItem, ...] = (
    NavItem("/", "Dashboard", "Overview"),
    NavItem("/scans", "Scans", "Overview"),
    NavItem("/events", "Events", "Overview"),
    NavItem("/services", "Health", "Overview"),
    NavItem("/scanners", "Scanners", "Scanning"),
    NavItem("/scanner-groups", "Scanner groups", "Scanning"),
    NavItem("/templates", "Templates", "Scanning"),
    NavItem("/schedules", "Schedules", "Scanning"),
    NavItem("/subnets", "Subnets", "Targets"),
    NavItem("/subnet-groups", "Subnet groups", "Targets"),
    NavItem("/exclusions", "Exclusions", "Targets"),
    NavItem("/port-lists", "Port lists", "Targets"),
    NavItem("/results", "Results explorer", "Results"),
    NavItem("/changes", "Changes", "Results"),
    NavItem("/hosts", "Host history", "Results"),
    NavItem("/users", "Users", "Administration", "admin"),
    NavItem("/audit", "Audit log", "Administration", "admin"),
    NavItem("/backups", "Backups", "Administration"),
)


def visible(user: SessionUser | None, items: tuple[NavItem, ...] = NAV) -> list[tuple[str, list[NavItem]]]:
    """Sections in order, each with the items this user may open."""
    if user is None:
        return []
    rank = ROLE_RANK.get(user.role, 0)
    sections: dict[str, list[NavItem]] = {}
    for item in items:
        if rank >= ROLE_RANK[item.min_role]:
            sections.setdefault(item.section, []).append(item)
    return list(sections.items())
