"""The whole orchestration loop on loopback, all real processes: a schedule every minute on a template,
a mirror group of scanner-a and scanner-b (real agents through a real ingest), the real dispatcher →
the run appears, both scanners get and finish their job, results arrive, the run completes."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_scanner_end_to_end import HOST, Service, _window
from tests.integration.test_scanner_support import (
    FAST_SCANNER,
    IngestEnv,
    agent_config,
    agent_enrol,
    ingest_env,
    running_agent,
)
from tests.support.postgres import PostgresServer
from tests.support.services import write_toml
from tests.support.settings import settings_document
from tests.support.waiting import wait_until


@pytest.fixture()
def env(pg: PostgresServer, tmp_path: Path) -> Iterator[IngestEnv]:
    with ingest_env(pg, tmp_path) as e:
        yield e


def _dispatcher(env: IngestEnv, pg: PostgresServer) -> subprocess.Popen[bytes]:
    dbs = {k: getattr(env.owner.databases, k).name for k in ("config", "jobs", "results")}
    doc = settings_document(pg, dbs, "mipo_dispatcher", scanner=FAST_SCANNER,
                            dispatcher={"tick_seconds": 0.5, "standby_poll_seconds": 0.5})
    config = write_toml(doc, env.tmp / "dispatcher.toml")
    with (env.tmp / "dispatcher.log").open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "app", "--config", str(config), "dispatcher"], stdout=out,
                                stderr=subprocess.STDOUT, env={"CREDENTIALS_DIRECTORY": str(env.tmp / "creds"),
                                                               "PATH": "/usr/bin:/bin"})


def _wait(env: IngestEnv, sql: str, params: object, want: object, timeout: float, what: str) -> None:
    """Poll the jobs database until `sql` returns `want`."""
    def rows() -> object:
        return env.query("jobs", sql, params)

    wait_until(lambda: rows() == want, timeout, what, interval=0.3,
               detail=lambda: f"{rows()!r} != {want!r}; see {env.tmp}")


def test_scheduled_mirror_run_reaches_both_scanners_and_completes(env: IngestEnv, pg: PostgresServer) -> None:
    # The window holds every port but offsets 11, 80 and 143: the service takes one of those.
    base, held = _window()
    service = Service(base + 11, greet=b"SSH-2.0-OpenSSH_9.9 mipo-e2e\r\n")
    ids = []
    try:
        configs = []
        for name in ("scanner-a", "scanner-b"):
            enrolment = env.new_scanner(name)
            config = agent_config(env, name)
            assert agent_enrol(env, config, enrolment.token).returncode == 0
            ids.append(enrolment.scanner.id)
            configs.append(config)
        # What an operator would configure through /api (the API itself is covered by test_config_objects).
        group = env.query("config", "INSERT INTO scanner_groups (name, mode) VALUES ('vantage', 'mirror')"
                          " RETURNING id")[0][0]
        for sid in ids:
            env.query("config", "INSERT INTO scanner_group_members VALUES (%s, %s)", (group, sid))
        plist = env.query("config", "INSERT INTO port_lists (name, spec) VALUES ('window', %s) RETURNING id",
                          (f"{base}-{base + 49}",))[0][0]
        tpl = env.query("config", "INSERT INTO scan_templates (name, port_list_id, scanner_group_id, rate, timeout_ms)"
                        " VALUES ('loopback', %s, %s, 2000, 500) RETURNING id", (plist, group))[0][0]
        subnet = env.query("config", "INSERT INTO subnets (name, cidr) VALUES ('lab', %s) RETURNING id", (HOST,))[0][0]
        env.query("config", "INSERT INTO template_targets (template_id, subnet_id) VALUES (%s, %s)", (tpl, subnet))
        env.query("config", "INSERT INTO schedules (name, template_id, cron, next_run_at)"
                  " VALUES ('every-minute', %s, '* * * * *', date_trunc('minute', now()))", (tpl,))
        with running_agent(env, configs[0]), running_agent(env, configs[1]):
            dispatcher = _dispatcher(env, pg)
            try:
                _wait(env, "SELECT count(*) FROM scan_runs WHERE schedule_id IS NOT NULL", None, [(1,)], 30,
                      "the scheduled run appearing")
                _wait(env, "SELECT scanner_id, status FROM jobs ORDER BY scanner_id", None,
                      [(ids[0], "completed"), (ids[1], "completed")], 90, "both scanners finishing their job")
                _wait(env, "SELECT status FROM scan_runs ORDER BY id LIMIT 1", None, [("completed",)], 30,
                      "the dispatcher completing the run")
            finally:
                dispatcher.terminate()
                assert dispatcher.wait(timeout=15) == 0
    finally:
        service.close()
        for sock in held:
            sock.close()
    run_id = env.query("jobs", "SELECT id FROM scan_runs ORDER BY id LIMIT 1")[0][0]
    seen = env.query("results", "SELECT scanner_id, host(ip), port FROM observations WHERE run_id = %s"
                     " ORDER BY scanner_id", (run_id,))
    assert seen == [(ids[0], HOST, base + 11), (ids[1], HOST, base + 11)]
    finished = env.query("config", "SELECT details->>'status' FROM events WHERE class = 'run_finished' AND run_id = %s",
                         (run_id,))
    assert finished == [("completed",)]
