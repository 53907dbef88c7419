"""Parse a port spec ("22,80,443,8000-8100", "top-100", "ssh,https", "/tcp" suffixes) and format it compactly."""

from __future__ import annotations

from collections.abc import Iterable

from app.domain.ports.catalog import NAMED, top_n
from app.domain.targets.intervals import IntervalSet

MAX_SPEC_LENGTH = 10_000


class PortSpecError(ValueError):
    """A port spec that cannot be read; the message names the offending item."""


ECHO_LIMIT = 40


def _shown(item: str) -> str:
    """The item as quoted in a message: cut to its first ECHO_LIMIT characters, so a 10,000-character
    item does not come back whole in the refusal."""
    text = item.strip()
    return repr(text if len(text) <= ECHO_LIMIT else text[:ECHO_LIMIT] + "…")


def _item(item: str) -> list[tuple[int, int]]:
    text = item.strip().lower()
    if text.endswith("/tcp"):
        text = text[:-4]
    elif "/" in text:
        raise PortSpecError(f"{_shown(item)}: only TCP is scanned; use a /tcp suffix or none")
    if not text:
        raise PortSpecError("empty item in the port list (two commas in a row?)")
    if text.startswith("top-"):
        try:
            return [(p, p) for p in top_n(int(text[4:]))]
        except (KeyError, ValueError):
            raise PortSpecError(f"{_shown(item)}: the catalog has top-100 and top-1000") from None
    if text in NAMED:
        return [(p, p) for p in NAMED[text]]
    first, dash, last = text.partition("-")
    # Length first: int() of thousands of digits raises instead of answering "out of range".
    if not first.isdigit() or (dash and not last.isdigit()) or len(first) > 5 or len(last) > 5:
        raise PortSpecError(
            f"{_shown(item)} is not a port, a range (8000-8100), top-100/top-1000 or a service name"
        )
    lo, hi = int(first), int(last) if dash else int(first)
    if not 1 <= lo <= 65535 or not 1 <= hi <= 65535:
        raise PortSpecError(f"{_shown(item)}: ports are 1-65535")
    if lo > hi:
        raise PortSpecError(f"{_shown(item)}: the range's first port is above its last")
    return [(lo, hi)]


def parse_ports(spec: str) -> IntervalSet:
    """The set of TCP ports a spec means; raises PortSpecError naming the first bad item."""
    if len(spec) > MAX_SPEC_LENGTH:
        raise PortSpecError(f"a port spec may have at most {MAX_SPEC_LENGTH} characters")
    if not spec.strip():
        raise PortSpecError("the port list is empty")
    intervals: list[tuple[int, int]] = []
    for item in spec.split(","):
        intervals.extend(_item(item))
    return IntervalSet.of(intervals)


def format_ports(ports: IntervalSet | Iterable[int]) -> str:
    """Compact text: consecutive ports become ranges, e.g. "1-1024,8080"."""
    iset = ports if isinstance(ports, IntervalSet) else IntervalSet.of((p, p) for p in ports)
    return ",".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in iset.intervals)


def normalise_spec(spec: str) -> str:
    return format_ports(parse_ports(spec))
