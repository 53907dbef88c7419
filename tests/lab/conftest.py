"""Lab tier fixtures: the booted lab (`lab`), testinfra hosts (`lab_host`), the deployed appliance (`deployed_lab`),
an admin API client over the edge (`appliance`) and the enrolled scanners (`scanners`).

`lab` boots every lab host once per session (reusing hosts that already run) and gives the
`LabState` (`lab.run("db", "ss -ltn")`, `lab.host("edge").addresses`, `lab.group("ingest")`).
At the end of the session the lab goes down (`mipo lab down`: state kept) only when this session
booted it, no other live session still uses it, and `MIPO_LAB_KEEP=1` is not set: a lab someone
brought up by hand stays up.
"""

from __future__ import annotations

import os
import secrets
import shlex
import ssl
import sys
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import testinfra

from app.domain.users.passwords import hash_password_sync
from appliance.lab.commands import deploy_hook
from appliance.lab.control import acquire_lease, lab_down, lab_up, release_lease
from appliance.lab.state import SSH_OPTIONS, LabError, LabState
from tests.lab.appliance_support import EDGE, Appliance, _install, _wait_agent_settled


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
    if getattr(result, "unready", ""):
        pytest.fail(f"the lab deploy succeeded, but the appliance does not answer: {result.unready}")
    if not getattr(result, "ok", False):
        pytest.fail(f"deploying into the lab failed ({getattr(result, 'errors', '?')} operations failed); "
                    f"see {getattr(result, 'log', 'the deploy log')}")
    return result


@pytest.fixture(scope="session")
def deployed_lab(lab: LabState, lab_deploy_result: Any) -> LabState:
    """The lab with the appliance deployed into it."""
    return lab


@pytest.fixture(scope="session")
def appliance(deployed_lab: LabState, lab_deploy_result: Any) -> Iterator[Appliance]:
    """An admin of our own (the first admin must change its password first), logged in over the edge."""
    name, password = f"scanlab{secrets.token_hex(3)}", secrets.token_urlsafe(18)
    digest = hash_password_sync(password).replace("'", "''")
    out = deployed_lab.run("db", "runuser -u postgres -- psql -d mipo_config -v ON_ERROR_STOP=1 -c " + shlex.quote(
        f"INSERT INTO users (username, password_hash, role) VALUES ('{name}', '{digest}', 'admin')"))
    assert out.returncode == 0
    # An SSLContext, not the CA file's path: httpx deprecates verify=<str>.
    tls = ssl.create_default_context(cafile=lab_deploy_result.ca_file)
    with httpx.Client(base_url=f"https://{EDGE}", verify=tls, timeout=60, trust_env=False) as api:
        login = api.post("/api/auth/login", json={"username": name, "password": password})
        assert login.status_code == 200, login.text
        api.headers["X-CSRF-Token"] = login.json()["csrf_token"]
        yield Appliance(deployed_lab, api, lab_deploy_result.ca_file)


@pytest.fixture(scope="session")
def scanners(appliance: Appliance) -> dict[str, int]:
    """scanner-a and scanner-b added through the API and installed with the shown command: host → scanner id.
    Tests must not assume they are online (another test may have stopped one): wait for it."""
    hosts = ("scanner-a", "scanner-b")
    ids = {host: _install(appliance, host, f"lab-{host}-{secrets.token_hex(2)}") for host in hosts}
    for host in hosts:  # installing restarted the agent: no job for a stale claim of the old one
        _wait_agent_settled(appliance, host)
    return ids
