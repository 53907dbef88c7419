"""The heartbeat's minimum agent version: an agent the appliance calls too old keeps heartbeating but claims
no job, says so once in its log with how to upgrade, and the manager shows the scanner as outdated."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from app.scanner import VERSION
from app.scanner.versions import older_than
from tests.integration.test_scanner_support import (
    FAST_SCANNER,
    IngestEnv,
    agent_config,
    agent_enrol,
    ingest_env,
    running_agent,
)
from tests.support.manager import manager_client
from tests.support.postgres import PostgresServer
from tests.support.waiting import wait_until

REQUIRED = "99.0"


@pytest.fixture()
def env(pg: PostgresServer, tmp_path: Path) -> Iterator[IngestEnv]:
    with ingest_env(pg, tmp_path, scanner={**FAST_SCANNER, "min_agent_version": REQUIRED}) as e:
        yield e


def _last_heartbeat(env: IngestEnv, scanner_id: int) -> datetime | None:
    return env.query("config", "SELECT last_heartbeat_at FROM scanners WHERE id = %s", (scanner_id,))[0][0]


def _beat_after(env: IngestEnv, scanner_id: int, since: datetime | None) -> bool:
    at = _last_heartbeat(env, scanner_id)
    return at is not None and (since is None or at > since)


def test_outdated_agent_heartbeats_but_claims_nothing_until_the_appliance_accepts_it(env: IngestEnv) -> None:
    enrolment = env.new_scanner("old-agent")
    scanner_id = enrolment.scanner.id
    config = agent_config(env, "old")
    assert agent_enrol(env, config, enrolment.token).returncode == 0
    _run_id, job_id = env.new_job(scanner_id, [["127.77.0.9", "127.77.0.9"]], "1-20", cost=20)
    log = config.with_name("agent.log")
    with running_agent(env, config):
        wait_until(lambda: log.exists() and REQUIRED in log.read_text(), 30, "the agent logs that it is too old")
        # Heartbeats go on: the recorded beat moves forward twice after the agent gave up claiming.
        for _ in range(2):
            since = _last_heartbeat(env, scanner_id)
            wait_until(lambda: _beat_after(env, scanner_id, since), 30, "a later heartbeat")  # noqa: B023 (used at once)
        assert env.query("jobs", "SELECT status, attempts FROM jobs WHERE id = %s", (job_id,)) == [("pending", 0)]
        lines = [line for line in log.read_text().splitlines() if "too old" in line]
        assert len(lines) == 1, lines  # one clear line, not one per heartbeat
        assert f"mipo-scanner {VERSION} is too old: this appliance requires version {REQUIRED} or newer" in lines[0]
        assert "re-run the install command" in lines[0]

        # The manager's view of the same databases: outdated in the API, badge and filter in the GUI.
        with manager_client(env.owner, role="admin") as admin:
            scanner = admin.get(f"/api/scanners/{scanner_id}").json()
            assert (scanner["version"], scanner["outdated"], scanner["online"]) == (VERSION, True, True)
            listed = admin.get("/scanners", params={"state": "outdated"})
            assert listed.status_code == 200 and "old-agent" in listed.text and "state-outdated" in listed.text
            detail = admin.get(f"/scanners/{scanner_id}").text
            assert "requires a newer agent" in detail and "re-run the install command" in detail

        # The appliance lowers its requirement: the next heartbeat answer lets the same agent claim again.
        env.process.stop()
        env.process.config.write_text(env.process.config.read_text().replace(
            f'min_agent_version = "{REQUIRED}"', f'min_agent_version = "{VERSION}"'))
        env.process.start()
        status = env.wait_job(job_id, timeout=60)
        assert status[0] == "completed", status
    assert "accepts mipo-scanner" in log.read_text()


def test_current_agent_is_not_outdated(env: IngestEnv) -> None:
    """The manager calls a scanner outdated only when its version sorts before the requirement."""
    enrolment = env.new_scanner("fresh-agent")
    env.query("config", "UPDATE scanners SET version = %s WHERE id = %s", (REQUIRED, enrolment.scanner.id))
    with manager_client(env.owner, role="admin") as admin:
        assert admin.get(f"/api/scanners/{enrolment.scanner.id}").json()["outdated"] is False
        assert "fresh-agent" not in admin.get("/scanners", params={"state": "outdated"}).text


@pytest.mark.parametrize(("version", "minimum", "older"), [
    ("0.1.0", "0.2.0", True), ("0.1", "0.1.0", False), ("0.10.0", "0.9.9", False), ("1.2.3", "1.2.3", False),
    ("0.1.0", "", False), ("dev", "0.2.0", False), ("0.1.0", "1", True),
])
def test_version_order_is_numeric(version: str, minimum: str, older: bool) -> None:
    assert older_than(version, minimum) is older
