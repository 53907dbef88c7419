"""The edge: TLS ≥ 1.2 with the appliance CA, HSTS, routes to manager and both ingest nodes, safe access log."""

from __future__ import annotations

import shlex
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from appliance.lab.state import LabState
from tests.lab.deploy_support import BACKUP, EDGE_EXTERNAL, INGEST_1, MANAGER, connects, put_file

pytestmark = pytest.mark.lab
CA = "/tmp/mipo-ca.crt"


@pytest.fixture(scope="module")
def scanner(deployed_lab: LabState, lab_deploy_result: Any) -> Iterator[str]:
    """scanner-a, an external host, trusting the appliance CA (as an operator's machine would)."""
    put_file(deployed_lab, "scanner-a", CA, Path(lab_deploy_result.ca_file).read_text())
    yield "scanner-a"


def curl(lab: LabState, host: str, path: str, *options: str) -> str:
    """HTTP status code of a request through the edge from `host`, verifying TLS with the appliance CA."""
    args = " ".join(shlex.quote(o) for o in options)
    cmd = f"curl -sS -o /dev/null -w '%{{http_code}}' --max-time 10 --cacert {CA} {args} https://{EDGE_EXTERNAL}{path}"
    return lab.run(host, cmd, check=False).stdout.strip()


def test_health_answers_200_through_the_edge(deployed_lab: LabState, scanner: str) -> None:
    """An external host reaches the appliance over HTTPS, trusting only the appliance CA."""
    assert curl(deployed_lab, scanner, "/health") == "200"


@pytest.mark.parametrize(("flag", "accepted"), [("-tls1_1", False), ("-tls1_2", True), ("-tls1_3", True)])
def test_tls_versions(deployed_lab: LabState, scanner: str, flag: str, accepted: bool) -> None:
    """TLS 1.1 is refused; TLS 1.2 and 1.3 are accepted (the client offers 1.1 at security level 0)."""
    cipher = "-cipher DEFAULT@SECLEVEL=0" if flag == "-tls1_1" else ""
    result = deployed_lab.run(scanner, f"echo | timeout 10 openssl s_client -connect {EDGE_EXTERNAL}:443 {flag} "
                              f"{cipher} -CAfile {CA} -verify_return_error 2>&1", check=False)
    assert (result.returncode == 0 and "Verify return code: 0 (ok)" in result.stdout) == accepted, result.stdout


@pytest.mark.parametrize("header", ["strict-transport-security: max-age=63072000; includeSubDomains",
                                    "x-content-type-options: nosniff", "x-frame-options: DENY",
                                    "referrer-policy: no-referrer"])
def test_security_headers(deployed_lab: LabState, scanner: str, header: str) -> None:
    """HSTS and the security headers are on every answer of the edge."""
    out = deployed_lab.run(scanner, f"curl -sS -D - -o /dev/null --cacert {CA} https://{EDGE_EXTERNAL}/health").stdout
    assert header.lower() in out.lower().replace("\r", "")


@pytest.mark.parametrize(("address", "port"), [(MANAGER, 8001), (INGEST_1, 8002), (BACKUP, 8003),
                                               (EDGE_EXTERNAL, 8001), (EDGE_EXTERNAL, 22)])
def test_internal_ports_are_unreachable_from_outside(deployed_lab: LabState, address: str, port: int) -> None:
    """From the external network only 443 on the edge answers: no manager, ingest, backup or SSH port."""
    assert not connects(deployed_lab, "scanner-a", address, port)


@pytest.mark.parametrize(("host", "address", "port"), [("dispatcher", MANAGER, 8001),
                                                       ("dispatcher", INGEST_1, 8002),
                                                       ("ingest-2", BACKUP, 8003)])
def test_app_ports_refuse_internal_hosts_other_than_their_callers(deployed_lab: LabState, host: str,
                                                                  address: str, port: int) -> None:
    """Manager and ingest answer only Traefik; the backup API answers only the manager."""
    assert not connects(deployed_lab, host, address, port)


@pytest.mark.parametrize(("host", "address", "port"), [("edge", MANAGER, 8001), ("edge", INGEST_1, 8002),
                                                       ("manager", BACKUP, 8003)])
def test_app_ports_answer_their_callers(deployed_lab: LabState, host: str, address: str, port: int) -> None:
    """The allowed paths stay open (the control for the refusals above)."""
    assert connects(deployed_lab, host, address, port)


def test_scanner_paths_survive_a_stopped_ingest_node(deployed_lab: LabState, scanner: str) -> None:
    """With ingest-1 stopped, /scanner/… through the edge is still served (by ingest-2)."""
    deployed_lab.run("ingest-1", "systemctl stop mipo-ingest.service")
    try:
        codes = [curl(deployed_lab, scanner, "/scanner/agent.pyz.sha256") for _ in range(6)]
    finally:
        deployed_lab.run("ingest-1", "systemctl start mipo-ingest.service")
    assert codes == ["200"] * 6


def test_access_log_never_records_credentials(deployed_lab: LabState, scanner: str) -> None:
    """Authorization, Cookie and X-Mipo-Key values never reach Traefik's access log, though the request does."""
    secret, marker = uuid.uuid4().hex, uuid.uuid4().hex
    curl(deployed_lab, scanner, f"/health?probe={marker}", "-H", f"Authorization: Bearer {secret}",
         "-H", f"Cookie: __Host-mipo-session={secret}", "-H", f"X-Mipo-Key: mipo_{secret}")
    log = deployed_lab.run("edge", "cat /var/log/traefik/access.log").stdout
    assert marker in log
    assert secret not in log


@pytest.mark.parametrize(("path", "body"), [("/api/auth/login", '{"username": "nobody", "password": "wrong-guess"}'),
                                            ("/scanner/v1/enrol", '{"token": "not-a-token"}')])
def test_login_and_enrolment_are_rate_limited_at_the_edge(deployed_lab: LabState, lab_deploy_result: Any,
                                                          path: str, body: str) -> None:
    """A burst of guesses from one address gets Traefik's 429 before the app sees most of them."""
    # From `target`, so the limit trips for an address no other test logs in or enrols from.
    put_file(deployed_lab, "target", CA, Path(lab_deploy_result.ca_file).read_text())
    loop = (f"for i in $(seq 40); do curl -s -o /dev/null -w '%{{http_code}}\\n' --max-time 10 --cacert {CA} "
            f"-H 'Content-Type: application/json' -d {shlex.quote(body)} https://{EDGE_EXTERNAL}{path}; done")
    codes = deployed_lab.run("target", loop, timeout=300).stdout.split()
    assert len(codes) == 40
    assert codes.count("429") >= 10, codes
