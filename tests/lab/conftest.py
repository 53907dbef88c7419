"""Lab tier fixtures: the booted lab (`lab`), testinfra hosts (`lab_host`), the deployed appliance (`deployed_lab`).

`lab` boots every lab host once per session (reusing hosts that already run) and gives the
`LabState` (`lab.run("db", "ss -ltn")`, `lab.host("edge").addresses`, `lab.group("ingest")`).
At the end of the session the lab goes down (`mipo lab down`: state kept) only when this session
booted it, no other live session still uses it, and `MIPO_LAB_KEEP=1` is not set: a lab someone
brought up by hand stays up.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import testinfra

from appliance.lab.commands import deploy_hook
from appliance.lab.control import acquire_lease, lab_down, lab_up, release_lease
from appliance.lab.state import SSH_OPTIONS, LabError, LabState


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.path).startswith(here):
            item.add_marker(pytest.mark.lab)


def _progress(message: str) -> None:
    print(f"mipo lab: {message}", file=sys.stderr, flush=True)


@pytest.fixture(scope="session")
def lab() -> Iterator[LabState]:
    """Every lab host booted and answering SSH; torn down at the end (see the module docstring)."""
    if os.geteuid() != 0:
        pytest.fail("the lab tier boots containers and bridges: run it as root (`appliance/mipo test`)")
    lease = acquire_lease()
    try:
        up = lab_up(_progress)
    except LabError as exc:
        release_lease(lease)
        pytest.fail(f"the lab did not come up: {exc}")
    yield up.state
    last_user = release_lease(lease)
    if up.started and last_user and os.environ.get("MIPO_LAB_KEEP") != "1":
        lab_down(_progress)


LabHostFactory = Callable[[str], Any]


@pytest.fixture(scope="session")
def lab_host(lab: LabState) -> LabHostFactory:
    """lab_host("db") → a testinfra host for that lab host, over SSH as root with the lab key."""
    cache: dict[str, Any] = {}

    def get(name: str) -> Any:
        if name not in cache:
            host = lab.host(name)
            cache[name] = testinfra.get_host(
                f"ssh://{lab.ssh_user}@{host.ssh_address}",
                ssh_identity_file=str(lab.ssh_key),
                ssh_extra_args=" ".join(SSH_OPTIONS),
            )
        return cache[name]

    return get


@pytest.fixture(scope="session")
def lab_deploy_result(lab: LabState) -> Any:
    """The `DeployResult` of deploying the appliance into the lab (`appliance.deploy.deploy_lab`), once
    per session; fails the test when the deploy did."""
    hook = deploy_hook()
    if hook is None:
        pytest.fail("appliance.deploy.deploy_lab is missing: the appliance deploy has not landed yet")
    result = hook(lab)
    if not getattr(result, "ok", False):
        pytest.fail(f"deploying into the lab failed ({getattr(result, 'errors', '?')} operations failed); "
                    f"see {getattr(result, 'log', 'the deploy log')}")
    return result


@pytest.fixture(scope="session")
def deployed_lab(lab: LabState, lab_deploy_result: Any) -> LabState:
    """The lab with the appliance deployed into it."""
    return lab
