"""Agent version comparison, shared by the agent (stdlib only) and the appliance's scanner view."""

from __future__ import annotations


def parse_version(text: str) -> tuple[int, ...] | None:
    """`"0.2.10"` → `(0, 2, 10)`; None for anything that is not dotted numbers."""
    parts = text.strip().split(".")
    if not text.strip() or not all(p.isdigit() for p in parts):
        return None
    return tuple(int(p) for p in parts)


def older_than(version: str, minimum: str) -> bool:
    """True only when both parse and `version` sorts before `minimum` (`0.1` == `0.1.0`).

    An unreadable version is never called outdated: a typo must not stop every scanner.
    """
    have, need = parse_version(version), parse_version(minimum)
    if have is None or need is None:
        return False
    width = max(len(have), len(need))
    return have + (0,) * (width - len(have)) < need + (0,) * (width - len(need))
