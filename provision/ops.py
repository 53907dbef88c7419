"""Small operation helpers shared by the components: put rendered text, run a command once per input."""

from __future__ import annotations

import hashlib
import io
import shlex
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

from pyinfra import host
from pyinfra.api import deploy as pyinfra_deploy
from pyinfra.api.operation import OperationMeta
from pyinfra.facts.files import Sha1File
from pyinfra.operations import files, server

F = TypeVar("F", bound=Callable[..., Any])


def deploy(name: str) -> Callable[[F], F]:
    """pyinfra's `@deploy(name)`, keeping the function's own signature for the type checker."""

    def wrap(func: F) -> F:
        return cast(F, pyinfra_deploy(name)(func))

    return wrap


def put_text(name: str, dest: str, content: str | bytes, mode: str = "0644", user: str = "root",
             group: str = "root") -> OperationMeta:
    """Ensure a file holds exactly this content (compared by checksum: unchanged → no change)."""
    data = content.encode() if isinstance(content, str) else content
    return files.put(name=name, src=io.BytesIO(data), dest=dest, mode=mode, user=user, group=group)


def changed(*ops: OperationMeta | None) -> Callable[[], bool]:
    """An `_if=` condition: true when any of the given operations changed something on the host."""
    return lambda: any(op is not None and op.did_change() for op in ops)


def once_per(name: str, marker: str, key: str, commands: Sequence[str]) -> OperationMeta | None:
    """Run commands unless `marker` already records `key`; the marker is written only after they succeed.

    Decided on a fact read before the run, so a deploy that changes nothing emits no operation, and a
    run interrupted half-way repeats the step next time.
    """
    want = hashlib.sha1((key + "\n").encode()).hexdigest()  # noqa: S324 - compared with sha1sum's output
    if host.get_fact(Sha1File, path=marker) == want:
        return None
    record = f"printf '%s\\n' {shlex.quote(key)} > {shlex.quote(marker)}"
    return server.shell(name=name, commands=[*commands, record])


def phase_barrier(phase: str) -> OperationMeta:
    """An operation every host runs at the same point of the deploy, changing nothing.

    pyinfra orders operations as a graph of each host's own sequence, so without a shared node an app
    host could migrate before the db host created the roles. Called from one line of deploy.py, it is
    one node for all hosts: everything after it waits for everything before it, on every host.
    """
    return files.directory(name=f"Phase barrier: {phase}", path="/etc/mipo", user="root", group="root",
                           mode="0755")
