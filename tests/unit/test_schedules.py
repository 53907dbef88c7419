"""Cron schedules fire at the right instants, including across DST changes in Europe/Berlin."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain.schedules.cron import CronError, jitter_offset, next_fire, parse_cron, validate, zone

BERLIN = zone("Europe/Berlin")


def _fires(expr: str, start: datetime, n: int, tz: str = "Europe/Berlin") -> list[datetime]:
    cron, z, out, t = parse_cron(expr), zone(tz), [], start
    for _ in range(n):
        t = next_fire(cron, z, t)
        out.append(t)
    return out


def _utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def test_daily_at_0230_across_spring_forward() -> None:
    """02:30 does not exist on 29 March 2026 in Berlin: it fires once, at 03:30 CEST (01:30 UTC)."""
    assert _fires("30 2 * * *", _utc(2026, 3, 27, 12), 3) == [
        _utc(2026, 3, 28, 1, 30), _utc(2026, 3, 29, 1, 30), _utc(2026, 3, 30, 0, 30)]


def test_daily_at_0230_across_fall_back_fires_once() -> None:
    """02:30 happens twice on 25 October 2026: a daily schedule fires at the first one only."""
    assert _fires("30 2 * * *", _utc(2026, 10, 24, 12), 3) == [
        _utc(2026, 10, 25, 0, 30), _utc(2026, 10, 26, 1, 30), _utc(2026, 10, 27, 1, 30)]


def test_hourly_across_fall_back_fires_every_real_hour() -> None:
    fires = _fires("0 * * * *", _utc(2026, 10, 24, 22, 30), 5)
    assert fires == [_utc(2026, 10, 24, 23) + timedelta(hours=i) for i in range(5)]


def test_hourly_across_spring_forward_skips_the_missing_hour_without_duplicates() -> None:
    fires = _fires("@hourly", _utc(2026, 3, 28, 23, 30), 4)
    assert fires == [_utc(2026, 3, 29, 0), _utc(2026, 3, 29, 1), _utc(2026, 3, 29, 2), _utc(2026, 3, 29, 3)]
    assert [f.astimezone(BERLIN).hour for f in fires] == [1, 3, 4, 5]


def test_local_time_stays_fixed_across_dst() -> None:
    """A 09:00 weekday schedule is 09:00 Berlin time in winter and in summer."""
    fires = _fires("0 9 * * mon-fri", _utc(2026, 3, 26), 4)
    assert [f.astimezone(BERLIN).strftime("%a %H:%M") for f in fires] == [
        "Thu 09:00", "Fri 09:00", "Mon 09:00", "Tue 09:00"]
    assert fires[1].hour == 8 and fires[2].hour == 7


@pytest.mark.parametrize(("expr", "expected"), [
    ("*/15 * * * *", [_utc(2026, 1, 1, 0, 15), _utc(2026, 1, 1, 0, 30)]),
    ("5/20 * * * *", [_utc(2026, 1, 1, 0, 25), _utc(2026, 1, 1, 0, 45)]),
    ("0 0 1 jan *", [_utc(2027, 1, 1), _utc(2028, 1, 1)]),
    ("0 0 13 * fri", [_utc(2026, 1, 2), _utc(2026, 1, 9)]),  # either day field matches
    ("@weekly", [_utc(2026, 1, 4), _utc(2026, 1, 11)]),
])
def test_field_syntax(expr: str, expected: list[datetime]) -> None:
    assert _fires(expr, _utc(2026, 1, 1, 0, 5), 2, tz="UTC") == expected


@pytest.mark.parametrize(("expr", "tz", "needle"), [
    ("* * * *", "UTC", "5 fields"), ("60 * * * *", "UTC", "0-59"), ("* * * * 8", "UTC", "0-7"),
    ("*/0 * * * *", "UTC", "step"), ("@reboot", "UTC", "preset"), ("0 0 30 2 *", "UTC", "never"),
    ("* * * * *", "Mars/Olympus", "time zone"), ("5-1 * * * *", "UTC", "backwards"),
])
def test_bad_schedules_are_refused(expr: str, tz: str, needle: str) -> None:
    with pytest.raises(CronError, match=needle):
        validate(expr, tz)


def test_jitter_is_deterministic_per_schedule_and_bounded() -> None:
    assert jitter_offset(7, 300) == jitter_offset(7, 300)
    offsets = {jitter_offset(i, 300) for i in range(50)}
    assert len(offsets) > 10
    assert all(timedelta(0) <= o <= timedelta(seconds=300) for o in offsets)
    assert jitter_offset(7, 0) == timedelta(0)


def _reference_next(expr: str, tz_name: str, after: datetime) -> datetime:
    """Brute force: every wall-clock minute from 3 h before `after` to 2 days after, no shortcuts."""
    from app.domain.schedules.cron import _instants

    cron, tz = parse_cron(expr), zone(tz_name)
    wall = after.astimezone(tz).replace(tzinfo=None, second=0, microsecond=0) - timedelta(hours=3)
    end = wall + timedelta(days=2)
    found: list[datetime] = []
    while wall < end:
        if cron.day_matches(wall) and wall.hour in cron.hours and wall.minute in cron.minutes:
            found.extend(i for i in _instants(wall, tz, cron) if i > after)
        wall += timedelta(minutes=1)
    return min(found)


_TRANSITIONS = [  # Berlin, New York and Lord Howe DST changes (UTC instants, approximately)
    datetime(2026, 3, 29, 1, tzinfo=UTC), datetime(2026, 10, 25, 1, tzinfo=UTC),
    datetime(2026, 3, 8, 7, tzinfo=UTC), datetime(2026, 11, 1, 6, tzinfo=UTC),
    datetime(2026, 4, 4, 15, tzinfo=UTC), datetime(2026, 10, 3, 15, 30, tzinfo=UTC)]


@settings(max_examples=300, deadline=None)
@given(minutes=st.sets(st.integers(0, 59), min_size=1, max_size=4), hours=st.one_of(
    st.just("*"), st.sets(st.integers(0, 23), min_size=1, max_size=4).map(lambda s: ",".join(map(str, sorted(s))))),
    near=st.sampled_from(_TRANSITIONS), offset=st.integers(-6 * 3600, 6 * 3600),
    tz_name=st.sampled_from(["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "UTC"]))
def test_next_fire_matches_brute_force_near_dst_changes(minutes: set[int], hours: str, near: datetime, offset: int,
                                                        tz_name: str) -> None:
    """The search shortcuts (start window, early stop) never change the answer, in several zones' DST changes
    (Lord Howe shifts by 30 minutes)."""
    expr = f"{','.join(map(str, sorted(minutes)))} {hours} * * *"
    after = near + timedelta(seconds=offset)
    assert next_fire(parse_cron(expr), zone(tz_name), after) == _reference_next(expr, tz_name, after)
