"""Which backups retention removes: beyond the newest keep_count, or older than keep_days."""

from __future__ import annotations

from datetime import datetime, timedelta


def expired_backups(backups: list[tuple[str, datetime]], keep_count: int, keep_days: int,
                    now: datetime) -> list[str]:
    """Ids to delete, oldest first. The newest backup is never deleted, however old: a stalled
    schedule must not leave the appliance with no backup at all."""
    ordered = sorted(backups, key=lambda b: b[1], reverse=True)
    cutoff = now - timedelta(days=keep_days)
    doomed = [bid for i, (bid, created) in enumerate(ordered) if i > 0 and (i >= keep_count or created < cutoff)]
    return list(reversed(doomed))
