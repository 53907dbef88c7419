"""The backup directory on disk: atomic writes, listing, checksums, private work space and the lock."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from app.errors import Conflict, NotFound

MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
WORK = ".work"            # private temporary space (decrypted dumps live here, briefly)
INCOMING = ".incoming-"   # a backup being written; renamed into place only when complete
BACKUP_ID = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{6}$")
CHUNK = 1 << 20


def new_backup_id(now: datetime) -> str:
    # Sortable by time; the random suffix keeps two backups in one second apart.
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def ensure_layout(root: Path) -> None:
    """The backup directory and its work space, readable by the backup service only."""
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    (root / WORK).mkdir(mode=0o700, exist_ok=True)
    os.chmod(root, 0o700)
    os.chmod(root / WORK, 0o700)


def backup_path(root: Path, backup_id: str) -> Path:
    """The directory of one complete backup; ids are checked so a path never leaves `root`."""
    if not BACKUP_ID.match(backup_id):
        raise NotFound(f"no backup {backup_id!r}: backup ids look like 20260101T020000Z-1a2b3c",
                       reason="backup_not_found")
    path = root / backup_id
    if not (path / MANIFEST).is_file():
        raise NotFound(f"no backup {backup_id!r} in {root}", reason="backup_not_found")
    return path


def list_backup_ids(root: Path) -> list[str]:
    """Complete backups, newest first (incoming and work directories are not backups)."""
    if not root.is_dir():
        return []
    ids = [p.name for p in root.iterdir() if BACKUP_ID.match(p.name) and (p / MANIFEST).is_file()]
    return sorted(ids, reverse=True)


def hash_file(path: Path) -> tuple[str, int]:
    """SHA-256 (hex) and size, read in chunks: a dump is never held in memory."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def copy_and_hash(source: Path, target: Path) -> tuple[str, int]:
    """Copy into the private work dir while hashing: what is decrypted is exactly what was checked."""
    digest = hashlib.sha256()
    size = 0
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with source.open("rb") as src, os.fdopen(fd, "wb") as dst:
        while chunk := src.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
            dst.write(chunk)
    return digest.hexdigest(), size


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file_durably(path: Path, data: bytes) -> None:
    """Temporary file, fsync, rename: a reader sees the whole file or none."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def publish(incoming: Path, final: Path) -> None:
    """Make a fully written backup visible in one rename, after everything in it is on disk."""
    for child in incoming.iterdir():
        fsync_path(child)
    fsync_path(incoming)
    os.rename(incoming, final)
    fsync_path(final.parent)


def remove_tree(path: Path) -> None:
    """Rename first so a half-deleted backup never looks like a backup, then delete."""
    doomed = path.with_name(f".deleting-{path.name}-{secrets.token_hex(3)}")
    os.rename(path, doomed)
    fsync_path(path.parent)
    shutil.rmtree(doomed)


def remove_leftovers(root: Path) -> list[str]:
    """Incomplete backups and work directories of interrupted runs (call with the lock held)."""
    removed: list[str] = []
    if not root.is_dir():
        return removed
    for p in root.iterdir():
        if p.name.startswith((INCOMING, ".deleting-")):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p.name)
    work = root / WORK
    if work.is_dir():
        for p in work.iterdir():
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    return removed


@contextlib.contextmanager
def private_workdir(root: Path) -> Iterator[Path]:
    """A 0700 directory for decrypted dumps and libpq password files; always deleted afterwards."""
    ensure_layout(root)
    path = Path(tempfile.mkdtemp(prefix="op-", dir=root / WORK))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class DirectoryLock:
    """One backup or restore at a time per backup directory, across the API and the timer's one-shot."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._fd: int | None = None

    def acquire(self) -> None:
        ensure_layout(self.root)
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise Conflict("another backup or restore is running; retry when it has finished",
                           reason="backup_busy") from None
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def backup_time(backup_id: str) -> datetime:
    """When a backup was made, from its id (valid even when its manifest is not)."""
    return datetime.strptime(backup_id[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
