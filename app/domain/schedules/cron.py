"""Parse 5-field cron expressions (and @presets) and compute DST-correct next fire instants.

Fields are matched against the wall clock of the schedule's time zone. Around DST changes:
- a wall time that does not exist (spring forward, e.g. 02:30 in Europe/Berlin) fires at the
  instant the clock jumps past it (zoneinfo's fold=0 reading: 02:30 CET = 03:30 CEST), once;
- a wall time that happens twice (fall back) fires once, at its first occurrence — except when the
  hour field is `*`, where each real hour fires (as Vixie cron does for hourly jobs).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

PRESETS = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
}
_MONTHS = {m: i for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), start=1)}
_DAYS = {d: i for i, d in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (  # name, low, high, names
    ("minute", 0, 59, {}), ("hour", 0, 23, {}), ("day of month", 1, 31, {}),
    ("month", 1, 12, _MONTHS), ("day of week", 0, 7, _DAYS),
)
# Feb 29 on a given weekday can be 28 years away; nothing sensible lies further.
_HORIZON_DAYS = 366 * 29


class CronError(ValueError):
    """A cron expression or time zone that cannot be used; the message says which part and why."""


def _value(text: str, low: int, high: int, names: dict[str, int], field: str) -> int:
    key = text.lower()
    if key in names:
        return names[key]
    if not text.isdigit():
        raise CronError(f"{field}: {text!r} is not a number" + (" or a name" if names else ""))
    value = int(text)
    if not low <= value <= high:
        raise CronError(f"{field}: {value} is outside {low}-{high}")
    return value


def _field(text: str, low: int, high: int, names: dict[str, int], field: str) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        base, slash, step_s = part.partition("/")
        step = 1
        if slash:
            if not step_s.isdigit() or int(step_s) < 1:
                raise CronError(f"{field}: step {step_s!r} must be a positive number")
            step = int(step_s)
        if base == "*":
            lo, hi = low, high
        elif "-" in base:
            a, _, b = base.partition("-")
            lo, hi = _value(a, low, high, names, field), _value(b, low, high, names, field)
            if lo > hi:
                raise CronError(f"{field}: range {base!r} runs backwards")
        elif base:
            lo = _value(base, low, high, names, field)
            hi = high if slash else lo  # "5/15" means 5, 20, 35, 50
        else:
            raise CronError(f"{field}: empty item")
        values.update(range(lo, hi + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class Cron:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    days_restricted: bool
    weekdays_restricted: bool
    every_hour: bool

    def day_matches(self, day: datetime) -> bool:
        if day.month not in self.months:
            return False
        dom = day.day in self.days
        dow = (day.isoweekday() % 7) in self.weekdays
        # Classic cron: when both day fields are restricted, either may match.
        if self.days_restricted and self.weekdays_restricted:
            return dom or dow
        return dom and dow


def parse_cron(expression: str) -> Cron:
    text = expression.strip()
    text = PRESETS.get(text.lower(), text)
    if text.startswith("@"):
        raise CronError(f"unknown preset {expression!r}; use one of {', '.join(sorted(PRESETS))}")
    parts = text.split()
    if len(parts) != 5:
        raise CronError(
            f"{expression!r}: expected 5 fields (minute hour day-of-month month day-of-week), got {len(parts)}"
        )
    values = [_field(p, lo, hi, names, name) for p, (name, lo, hi, names) in zip(parts, _FIELDS, strict=True)]
    weekdays = frozenset(v % 7 for v in values[4])
    return Cron(values[0], values[1], values[2], values[3], weekdays,
                days_restricted=parts[2] != "*", weekdays_restricted=parts[4] != "*",
                every_hour=values[1] == frozenset(range(24)))


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise CronError(f"unknown time zone {name!r}; use an IANA name such as Europe/Berlin or UTC") from None


def _instants(wall: datetime, tz: ZoneInfo, cron: Cron) -> list[datetime]:
    """The UTC instants a matching wall-clock minute stands for (0, 1 or 2 of them)."""
    first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    second = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    if first == second:
        return [first]
    if second < first:  # gap: fold=0 reads the wall time with the old offset, i.e. just after the jump
        return [first]
    return [first, second] if cron.every_hour else [first]


def next_fire(cron: Cron, tz: ZoneInfo, after: datetime) -> datetime:
    """The first instant strictly after `after` (aware) at which the schedule is due, in UTC."""
    if after.tzinfo is None:
        raise ValueError("after must be timezone-aware")
    # Start two hours of wall time early: a fold can map earlier wall minutes to later instants.
    start = (after.astimezone(tz).replace(tzinfo=None) - timedelta(hours=2)).replace(second=0, microsecond=0)
    day = start.replace(hour=0, minute=0)
    best: datetime | None = None
    # UTC offsets of one zone differ by at most a few hours: a wall time this far past the best
    # candidate's wall time cannot map to an earlier instant, so the search can stop there.
    limit: datetime | None = None
    for _ in range(_HORIZON_DAYS):
        if limit is not None and day > limit:
            break
        if cron.day_matches(day):
            for hour in sorted(cron.hours):
                if day + timedelta(hours=hour + 1) <= start:
                    continue  # the whole hour lies before the search start
                for minute in sorted(cron.minutes):
                    wall = day.replace(hour=hour, minute=minute)
                    if wall < start:
                        continue
                    if limit is not None and wall > limit:
                        return best  # type: ignore[return-value]
                    for instant in _instants(wall, tz, cron):
                        if instant > after and (best is None or instant < best):
                            best = instant
                            limit = best.astimezone(tz).replace(tzinfo=None) + timedelta(hours=3)
        day += timedelta(days=1)
    if best is not None:
        return best
    raise CronError("the expression never matches a real date (e.g. 30 February)")


def validate(expression: str, timezone: str) -> None:
    """Raise CronError unless the expression parses, the zone exists and the schedule ever fires."""
    next_fire(parse_cron(expression), zone(timezone), datetime(2000, 1, 1, tzinfo=UTC))


def jitter_offset(schedule_id: int, jitter_seconds: int) -> timedelta:
    """A fixed offset in [0, jitter] per schedule: spreads schedules apart, same every time."""
    if jitter_seconds <= 0:
        return timedelta(0)
    digest = hashlib.sha256(f"mipo-schedule-{schedule_id}".encode()).digest()
    return timedelta(seconds=int.from_bytes(digest[:8], "big") % (jitter_seconds + 1))
