"""Retention keeps the newest keep_count backups younger than keep_days, and never the last one away."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from app.config import parse_settings
from app.domain.backups.retention import expired_backups
from app.domain.backups.service import prune
from app.domain.backups.storage import MANIFEST, list_backup_ids, new_backup_id

NOW = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)


def _settings(directory: Path, keep_count: int, keep_days: int):  # type: ignore[no-untyped-def]
    db = {"name": "x", "sslmode": "disable"}
    return parse_settings({"databases": {"config": db, "jobs": db, "results": db},
                           "backup": {"directory": str(directory), "keep_count": keep_count,
                                      "keep_days": keep_days}})


def _make_backups(root: Path, ages_days: list[float]) -> list[str]:
    ids = []
    for age in ages_days:
        backup_id = new_backup_id(NOW - timedelta(days=age))
        (root / backup_id).mkdir(parents=True)
        (root / backup_id / MANIFEST).write_text("{}")
        ids.append(backup_id)
    return ids


def test_prune_removes_the_oldest_beyond_the_count(tmp_path: Path) -> None:
    """Ten daily backups, keep 3: the seven oldest go, oldest first."""
    ids = _make_backups(tmp_path, [float(d) for d in range(10)])
    removed = prune(_settings(tmp_path, keep_count=3, keep_days=30), now=NOW)
    assert removed == list(reversed(ids[3:]))
    assert list_backup_ids(tmp_path) == ids[:3]


def test_prune_removes_backups_older_than_keep_days(tmp_path: Path) -> None:
    ids = _make_backups(tmp_path, [0.5, 3, 6.5, 8, 40])
    removed = prune(_settings(tmp_path, keep_count=14, keep_days=7), now=NOW)
    assert sorted(removed) == sorted(ids[3:])
    assert list_backup_ids(tmp_path) == ids[:3]


def test_prune_keeps_the_newest_backup_however_old(tmp_path: Path) -> None:
    """A schedule that stalled for months must not end with no backup at all."""
    ids = _make_backups(tmp_path, [100, 200])
    assert prune(_settings(tmp_path, keep_count=5, keep_days=7), now=NOW) == [ids[1]]
    assert list_backup_ids(tmp_path) == [ids[0]]


def test_prune_deletes_interrupted_backups(tmp_path: Path) -> None:
    (tmp_path / ".incoming-20261129T010000Z-abcdef").mkdir()
    (tmp_path / ".incoming-20261129T010000Z-abcdef" / "config.dump.age").write_bytes(b"partial")
    prune(_settings(tmp_path, keep_count=5, keep_days=7), now=NOW)
    assert not (tmp_path / ".incoming-20261129T010000Z-abcdef").exists()


@given(ages=st.lists(st.integers(min_value=0, max_value=10_000), min_size=0, max_size=40, unique=True),
       keep_count=st.integers(min_value=1, max_value=20), keep_days=st.integers(min_value=1, max_value=100))
def test_expired_backups_matches_the_rule(ages: list[int], keep_count: int, keep_days: int) -> None:
    """Kept = the newest, plus any among the newest keep_count younger than keep_days."""
    backups = [(f"b{a}", NOW - timedelta(hours=a)) for a in ages]
    doomed = set(expired_backups(backups, keep_count, keep_days, NOW))
    ranked = sorted(backups, key=lambda b: b[1], reverse=True)
    for rank, (bid, created) in enumerate(ranked):
        keep = rank == 0 or (rank < keep_count and created >= NOW - timedelta(days=keep_days))
        assert (bid not in doomed) == keep
