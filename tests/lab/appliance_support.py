"""Shared helpers for lab tests that drive the deployed appliance: the admin API client over the edge,
SQL on the `db` host, scanner installation through the API's install command, and polling."""

from __future__ import annotations

import json
import re
import shlex
import time
from dataclasses import dataclass
from typing import Any

import httpx

from appliance.lab.state import LabState
from tests.support.waiting import wait_until

EDGE = "198.18.0.10"
# A stopped agent's claim long poll (up to scanner.claim_long_poll = 25 s) lives on in ingest and can still
# claim the next job for that scanner, which then waits a whole lease (5 min) before it is requeued: seen in
# the lab (Traefik logs 499 for the poll; reported to the lead). Until ingest drops a long poll whose client
# went away, a freshly (re)started agent gets its first work only after this many seconds.
STALE_CLAIM_SECONDS = 30


@dataclass
class Appliance:
    lab: LabState
    api: httpx.Client
    ca_file: str

    def sql(self, database: str, query: str) -> list[list[str]]:
        out = self.lab.run("db", f"runuser -u postgres -- psql -d {database} -v ON_ERROR_STOP=1 -AtF '|' -c "
                                 f"{shlex.quote(query)}").stdout
        return [line.split("|") for line in out.splitlines() if line]

    def new_job(self, scanner_id: int, targets: list[list[str]], ports: str, options: dict[str, Any],
                cost: int) -> int:
        run = self.sql("mipo_jobs", "INSERT INTO scan_runs (template_id, template_name, mode, total_cost)"
                                    f" VALUES (0, 'lab-scanner-test', 'mirror', {cost}) RETURNING id")[0][0]
        job = self.sql("mipo_jobs", "INSERT INTO jobs (run_id, scanner_id, targets, ports, options, cost)"
                                    f" VALUES ({run}, {scanner_id}, '{json.dumps(targets)}', '{ports}',"
                                    f" '{json.dumps(options)}', {cost}) RETURNING id")[0][0]
        self.sql("mipo_jobs", f"SELECT pg_notify('mipo_jobs', '{scanner_id}')")
        return int(job)

    def wait_job(self, job_id: int, timeout: float = 600) -> list[str]:
        def finished() -> list[str] | None:
            row = self.sql("mipo_jobs", f"SELECT status, coalesce(error_class, ''), coalesce(last_error, '')"
                                        f" FROM jobs WHERE id = {job_id}")[0]
            return row if row[0] in ("completed", "failed") else None

        return wait_until(finished, timeout, f"job {job_id} finished", interval=1)

    def scanner(self, scanner_id: int) -> dict[str, Any]:
        answer = self.api.get(f"/api/scanners/{scanner_id}")
        assert answer.status_code == 200, answer.text
        return dict(answer.json())


def _install(app: Appliance, host: str, name: str) -> int:
    """Add the scanner through the API and run the shown command on its host (as root, token from a file)."""
    created = app.api.post("/api/scanners", json={"name": name})
    assert created.status_code == 201, created.text
    body = created.json()
    command = body["install_command"]
    assert "--cacert" in command and "--ca-sha256" in command, (
        "the install command does not pin the appliance CA: provisioning must set scanner.ca_file "
        f"(e.g. /etc/mipo/ca.crt) in mipo.toml of the manager and ingest hosts; got {command[:120]}…")
    token_file = "/root/.mipo-enrolment-token"
    put = app.lab.run(host, f"umask 077; printf '%s\\n' {shlex.quote(body['token'])} > {token_file}")
    assert put.returncode == 0
    as_root = command.replace("| sudo sh -s --", "| sh -s --") + f" --token-file {token_file}"
    done = app.lab.run(host, f"bash -c {shlex.quote(as_root)}; rc=$?; rm -f {token_file}; exit $rc", timeout=300)
    enrolled = re.search(r"enrolled as scanner (\S+) \(id (\d+)\)", done.stdout)
    assert enrolled, done.stdout + done.stderr
    # A host enrolled by an earlier session keeps its identity (and history): the key goes to that scanner.
    return int(enrolled.group(2))


def _wait_agent_settled(app: Appliance, host: str) -> None:
    """Wait until the agent on `host` has run for STALE_CLAIM_SECONDS (see there)."""
    out = app.lab.run(host, "ps -o etimes= -p \"$(systemctl show -p MainPID --value mipo-scanner)\"",
                      check=False).stdout.strip()
    age = int(out) if out.isdigit() else 0
    if age < STALE_CLAIM_SECONDS:
        time.sleep(STALE_CLAIM_SECONDS - age)


def get_json(client: httpx.Client, url: str, headers: dict[str, str] | None = None, **params: Any) -> Any:
    """GET through the admin API, asserting a 200, and the decoded body."""
    answer = client.get(url, params=params, headers=headers)
    assert answer.status_code == 200, f"GET {url}: {answer.status_code} {answer.text}"
    return answer.json()


def wait_run_finished(client: httpx.Client, run_id: int, scanner_ids: set[int], within: float) -> dict[str, Any]:
    """The run terminal (within `within` s) and its change detection done for every scanner (one run summary
    per scanner); returns the run."""
    run: dict[str, Any] = {}

    def finished() -> bool:
        run.update(get_json(client, f"/api/runs/{run_id}"))
        return run["status"] not in ("pending", "running")

    wait_until(finished, within, f"run {run_id} finished", interval=1)
    wait_until(lambda: {s["scanner_id"] for s in get_json(client, "/api/results/runs", run_id=run_id)} == scanner_ids,
               60, f"change detection of run {run_id} for every scanner", interval=1)
    return run


def run_now(client: httpx.Client, template_id: int, scanner_ids: set[int], within: float) -> int:
    """"Run now" on the template; the run id once the run completed and its changes are known."""
    request = client.post("/api/runs", json={"template_id": template_id})
    assert request.status_code == 202, request.text
    request_id = request.json()["id"]
    run_ids: list[int] = []

    def answered() -> bool:
        run_id = get_json(client, f"/api/run-requests/{request_id}")["run_id"]
        if run_id is not None:
            run_ids.append(int(run_id))
        return bool(run_ids)

    wait_until(answered, 60, f"run request {request_id} answered by the dispatcher", interval=1)
    run = wait_run_finished(client, run_ids[0], scanner_ids, within)
    assert run["status"] == "completed", run
    return run_ids[0]
