"""Run mipo roles as real processes (`python -m app … serve ROLE`) on loopback ports for tests."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.support.postgres import free_port
from tests.support.waiting import wait_until


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    """SIGTERM (a clean shutdown), then SIGKILL if it has not exited within `timeout`; always reaped."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def write_toml(data: dict[str, object], path: Path) -> Path:
    """Write nested dicts as TOML tables (enough for the settings schema)."""
    lines: list[str] = []

    def table(prefix: str, body: dict[str, object]) -> None:
        scalars = {k: v for k, v in body.items() if not isinstance(v, dict)}
        if prefix and scalars:
            lines.append(f"[{prefix}]")
        for k, v in scalars.items():
            lines.append(f"{k} = {toml_value(v)}")
        for k, v in body.items():
            if isinstance(v, dict):
                table(f"{prefix}.{k}" if prefix else k, v)

    table("", data)
    path.write_text("\n".join(lines) + "\n")
    return path


@contextlib.contextmanager
def serve_role(config: Path, role: str, credentials: Path, log: Path) -> Iterator[str]:
    """Start `python -m app serve ROLE`, wait until it answers, yield its base URL, stop it."""
    port = free_port()
    section = {"manager": "manager", "ingest": "ingest", "backup": "backup_api"}[role]
    patched = config.with_name(f"{config.stem}-{role}-{port}.toml")
    # Parsed and rewritten (not appended) so a config that already has the role's table keeps its other keys.
    data = tomllib.loads(config.read_text())
    table = data.setdefault(section, {})
    table["listen"] = f"127.0.0.1:{port}"
    write_toml(data, patched)
    env = {"CREDENTIALS_DIRECTORY": str(credentials), "PATH": "/usr/bin:/bin"}
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "app", "--config", str(patched), "serve", role],
                                stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        def answering() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"{role} exited with {proc.returncode}; see {log}")
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(url + "/health", timeout=1)  # any HTTP answer: it listens (a 503 may be what a test wants)
                return True
            return False

        wait_until(answering, 30, f"{role} answering", detail=lambda: f"see {log}")
        yield url
    finally:
        stop_process(proc)
