"""The agent's configuration file (/etc/mipo-scanner/agent.toml) and its identity helpers."""

from __future__ import annotations

import hashlib
import os
import socket
import tomllib
from dataclasses import dataclass
from pathlib import Path

DEFAULT_CONFIG = "/etc/mipo-scanner/agent.toml"  # repeated in __main__ (which must not import this module)


@dataclass(frozen=True)
class AgentSettings:
    server_url: str
    ca_file: str = ""
    key_file: str = "/etc/mipo-scanner/key"
    spool_dir: str = "/var/lib/mipo-scanner/spool"
    batch_size: int = 2000           # results per spooled batch
    batch_seconds: float = 1.0       # a partial batch is spooled after this long
    machine_id_file: str = "/etc/machine-id"
    workers: int = 0                 # scan processes for big jobs; 0: one per CPU core


def load(path: str | os.PathLike[str]) -> AgentSettings:
    try:
        data = tomllib.loads(Path(path).read_text())
    except OSError as exc:
        raise SystemExit(f"mipo-scanner: cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SystemExit(f"mipo-scanner: {path} is not valid TOML: {exc}") from None
    known = set(AgentSettings.__dataclass_fields__)
    unknown = set(data) - known
    if unknown:
        raise SystemExit(f"mipo-scanner: {path}: unknown key(s) {sorted(unknown)}; known: {sorted(known)}")
    if "server_url" not in data:
        raise SystemExit(f"mipo-scanner: {path}: server_url is required, e.g. https://mipo.example.net")
    return AgentSettings(**data)


def host_id(machine_id_file: str) -> str:
    """Stable identity of this host (re-installs keep it): SHA-256 of the machine id and the host name.

    The host name is mixed in because cloned images (VM templates, containers booted from one image)
    often share one /etc/machine-id; two such hosts must not become one scanner.
    """
    try:
        raw = Path(machine_id_file).read_text().strip()
    except OSError:
        raw = ""
    if not raw:
        raise SystemExit(f"mipo-scanner: {machine_id_file} is missing or empty; cannot derive a host identity")
    return hashlib.sha256(f"mipo-scanner:{raw}:{socket.gethostname()}".encode()).hexdigest()


def read_key(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        raise SystemExit(f"mipo-scanner: cannot read the API key {path}: {exc.strerror}; enrol first") from None


def write_key(path: str, key: str) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, key.encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, target)
