"""The backup API's one running operation (backup or restore), its state and its lock."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import msgspec

from app.domain.backups.schemas import OperationKind, OperationRead
from app.domain.backups.storage import DirectoryLock
from app.errors import DomainError

log = logging.getLogger("mipo.backup")


class OperationRunner:
    """Runs one operation at a time in the background; the directory lock also keeps the timer out."""

    def __init__(self, lock: DirectoryLock) -> None:
        self._lock = lock
        self.current: OperationRead | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self, kind: OperationKind, backup_id: str | None,
              work: Callable[[], Awaitable[str | None]]) -> OperationRead:
        """Raise Conflict when busy (here or in the timer's process); otherwise start and return at once."""
        self._lock.acquire()
        op = OperationRead(secrets.token_hex(8), kind, "running", datetime.now(UTC), backup_id)
        self.current = op

        async def run() -> None:
            try:
                result_id = await work()
                self.current = msgspec.structs.replace(op, state="succeeded", finished_at=datetime.now(UTC),
                                                       backup_id=result_id or backup_id)
            except DomainError as exc:
                log.warning("%s failed: %s", kind, exc)
                self.current = msgspec.structs.replace(op, state="failed", finished_at=datetime.now(UTC),
                                                       reason=exc.reason, message=str(exc))
            except Exception as exc:
                log.exception("%s failed", kind)
                self.current = msgspec.structs.replace(op, state="failed", finished_at=datetime.now(UTC),
                                                       reason="internal_error", message=f"{type(exc).__name__}: {exc}")
            finally:
                self._lock.release()

        self._task = asyncio.create_task(run())
        return op

    async def wait(self) -> None:
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
