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
        # The leases this agent holds (one small file per claimed job), kept apart from the messages to send.
        self.claims_dir = self.dir / "claims"
        self.claims_dir.mkdir(exist_ok=True, mode=0o700)
        for tmp in [*self.dir.glob("*.tmp"), *self.claims_dir.glob("*.tmp")]:
            tmp.unlink()  # a crash mid-write leaves a partial file that was never acknowledged

    @staticmethod
    def batch_name(job_id: int, lease: int, seq: int) -> str:
        return f"{job_id:012d}-{lease:08d}-{seq:010d}.json"

    @staticmethod
    def complete_name(job_id: int, lease: int) -> str:
        return f"{job_id:012d}-{lease:08d}-z-complete.json"

    def put(self, name: str, payload: bytes) -> Path:
        return self._write(self.dir / name, payload)

    def _write(self, final: Path, payload: bytes) -> Path:
        tmp = final.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, payload)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, final)
        self._sync_dir(final.parent)  # the rename itself must survive a power cut
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

    # -- held leases: written at claim, deleted once the job's completion was acknowledged (or refused as stale).
    # A record left over at start means the agent stopped mid-job: it gives that lease back (agent.py).
    @staticmethod
    def _claim_name(job_id: int, lease: int) -> str:
        return f"{job_id:012d}-{lease:08d}.claim"

    def put_claim(self, job_id: int, lease: int) -> None:
        self._write(self.claims_dir / self._claim_name(job_id, lease), f"{job_id} {lease}\n".encode())

    def claims(self) -> list[tuple[int, int]]:
        """(job_id, lease) of every held lease, oldest job first."""
        held = []
        for path in sorted(self.claims_dir.glob("*.claim")):
            job, _, lease = path.stem.partition("-")
            if job.isdigit() and lease.isdigit():
                held.append((int(job), int(lease)))
        return held

    def drop_claim(self, job_id: int, lease: int) -> None:
        (self.claims_dir / self._claim_name(job_id, lease)).unlink(missing_ok=True)
        self._sync_dir(self.claims_dir)

    def has_completion(self, job_id: int, lease: int) -> bool:
        return (self.dir / self.complete_name(job_id, lease)).exists()

    def batches_of(self, job_id: int, lease: int) -> list[Path]:
        """The job's result batches under this lease still waiting to be sent."""
        return sorted(self.dir.glob(f"{job_id:012d}-{lease:08d}-[0-9]*.json"))

    @staticmethod
    def job_of(path: Path) -> tuple[int, int] | None:
        """(job_id, lease) from a message file's name, None for a name this spool did not write."""
        parts = path.name.split("-")
        if len(parts) < 3 or not (parts[0].isdigit() and parts[1].isdigit()):
            return None
        return int(parts[0]), int(parts[1])

    def _sync_dir(self, directory: Path | None = None) -> None:
        fd = os.open(directory or self.dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
