"""Durable on-disk spool: one fsynced file per outgoing message, deleted only after ingest acknowledged it."""

from __future__ import annotations

import os
from pathlib import Path


class Spool:
    """Files sort in send order: `<job>-<lease>-<seq>.json`, then the job's `…-z-complete.json`."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        (self.dir / "rejected").mkdir(exist_ok=True, mode=0o700)
        for tmp in self.dir.glob("*.tmp"):  # a crash mid-write leaves a partial file that was never acknowledged
            tmp.unlink()

    @staticmethod
    def batch_name(job_id: int, lease: int, seq: int) -> str:
        return f"{job_id:012d}-{lease:08d}-{seq:010d}.json"

    @staticmethod
    def complete_name(job_id: int, lease: int) -> str:
        return f"{job_id:012d}-{lease:08d}-z-complete.json"

    def put(self, name: str, payload: bytes) -> Path:
        final = self.dir / name
        tmp = final.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, payload)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, final)
        self._sync_dir()  # the rename itself must survive a power cut
        return final

    def pending(self) -> list[Path]:
        return sorted(self.dir.glob("*.json"))

    def remove(self, path: Path) -> None:
        path.unlink(missing_ok=True)
        self._sync_dir()

    def reject(self, path: Path) -> None:
        """Keep a message ingest refused as malformed for a person to inspect; never resend it."""
        os.replace(path, self.dir / "rejected" / path.name)
        self._sync_dir()

    def _sync_dir(self) -> None:
        fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
