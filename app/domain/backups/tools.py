"""Child processes: pg_dump → age streaming, age decryption, pg_restore; libpq targets without argv secrets."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from app.config import Backup
from app.errors import DomainError, Invalid

STDERR_TAIL = 2000


class ToolError(DomainError):
    """A child process (pg_dump, pg_restore, age) failed; the message carries its stderr tail."""

    status_code = 500
    reason = "tool_failed"


def pg_tool(backup: Backup, tool: str, *args: str) -> list[str]:
    return [*backup.tool_prefix, f"{backup.pg_bin}/{tool}", *args]


def _pgpass_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


def libpq_target(conninfo: str, workdir: Path, label: str) -> str:
    """The conninfo with its password moved into a 0600 passfile in the private work dir.

    Child processes see only the passfile's path in argv; the password never appears in `ps`.
    """
    params = conninfo_to_dict(conninfo)
    password = params.pop("password", None)
    if password:
        passfile = workdir / f"pgpass-{label}"
        fd = os.open(passfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"*:*:*:*:{_pgpass_escape(str(password))}\n")
        params["passfile"] = str(passfile)
    return make_conninfo("", **{k: v for k, v in params.items() if v is not None})


def _tail(data: bytes | None) -> str:
    text = (data or b"").decode("utf-8", "replace").strip()
    return text[-STDERR_TAIL:]


async def run_tool(cmd: list[str], *, stdin_data: bytes | None = None, what: str) -> str:
    """Run one command to completion; its stdout is returned (small outputs only)."""
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        stdin=asyncio.subprocess.PIPE if stdin_data is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate(stdin_data)
    if proc.returncode != 0:
        raise ToolError(f"{what} failed (exit {proc.returncode}): {_tail(err)}")
    return out.decode("utf-8", "replace")


async def dump_encrypted(backup: Backup, target: str, snapshot: str, recipient: str, out_path: Path) -> None:
    """`pg_dump -Fc` piped straight into `age -r RECIPIENT`, written to `out_path` and fsynced.

    The dump flows through an OS pipe between the two children: it never passes through this
    process's memory and never touches the disk unencrypted.
    """
    read_end, write_end = os.pipe()
    with out_path.open("wb") as out:
        try:
            dump = await asyncio.create_subprocess_exec(
                *pg_tool(backup, "pg_dump", "--format=custom", f"--snapshot={snapshot}", "--no-password",
                         f"--dbname={target}"),
                stdin=asyncio.subprocess.DEVNULL, stdout=write_end, stderr=asyncio.subprocess.PIPE,
            )
            try:
                age = await asyncio.create_subprocess_exec(
                    backup.age_bin, "--encrypt", "--recipient", recipient,
                    stdin=read_end, stdout=out.fileno(), stderr=asyncio.subprocess.PIPE,
                )
            except BaseException:
                dump.kill()
                await dump.wait()
                raise
        finally:
            # Only the children hold the pipe now: age sees EOF when pg_dump exits, pg_dump
            # gets SIGPIPE if age dies.
            os.close(read_end)
            os.close(write_end)
        (_, dump_err), (_, age_err) = await asyncio.gather(dump.communicate(), age.communicate())
        if dump.returncode != 0:
            raise ToolError(f"pg_dump failed (exit {dump.returncode}): {_tail(dump_err)}")
        if age.returncode != 0:
            raise ToolError(f"age encryption failed (exit {age.returncode}): {_tail(age_err)}")
        out.flush()
        os.fsync(out.fileno())


async def decrypt(backup: Backup, identity: str, encrypted: Path, out_path: Path) -> None:
    """Decrypt one file completely to `out_path`; the identity goes in on stdin, never to disk."""
    fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.close(fd)
    proc = await asyncio.create_subprocess_exec(
        backup.age_bin, "--decrypt", "--identity", "-", "--output", str(out_path), str(encrypted),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate(identity.encode() + b"\n")
    if proc.returncode != 0:
        out_path.unlink(missing_ok=True)
        raise Invalid(f"{encrypted.name} could not be decrypted with the supplied identity: {_tail(err)}",
                      reason="decryption_failed")


async def check_archive(backup: Backup, dump: Path) -> None:
    """`pg_restore --list`: the decrypted file is a readable custom-format archive."""
    await run_tool(pg_tool(backup, "pg_restore", "--list", str(dump)), what=f"pg_restore --list {dump.name}")


async def restore_archive(backup: Backup, target: str, dump: Path) -> None:
    await run_tool(
        pg_tool(backup, "pg_restore", "--exit-on-error", "--no-password", f"--dbname={target}", str(dump)),
        what=f"pg_restore of {dump.name}",
    )
