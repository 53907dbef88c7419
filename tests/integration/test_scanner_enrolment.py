"""Enrolment tokens and API keys through a real ingest process: single use under concurrency, every
refusal with its reason, identity kept on re-install, and no secret stored in clear."""

from __future__ import annotations

import concurrent.futures
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.test_scanner_support import IngestEnv, ingest_env
from tests.support.postgres import PostgresServer


@pytest.fixture(scope="module")
def env(pg: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[IngestEnv]:
    with ingest_env(pg, tmp_path_factory.mktemp("enrol")) as e:
        yield e


def _heartbeat(env: IngestEnv, key: str) -> httpx.Response:
    return httpx.post(env.url + "/scanner/v1/heartbeat", json={"version": "t"}, headers={"X-Mipo-Key": key},
                      timeout=10)


def _heartbeat_once_known(env: IngestEnv, key: str, reason: str) -> httpx.Response:
    """A heartbeat after ingest's key cache learnt of a change: it is told at once (milliseconds), and never
    later than `auth_cache_seconds`; asked until then, the last answer is returned."""
    deadline = time.monotonic() + env.owner.scanner.auth_cache_seconds + 1.0
    while True:
        answer = _heartbeat(env, key)
        if answer.json().get("reason") == reason or time.monotonic() > deadline:
            return answer
        time.sleep(0.05)


def test_fifty_concurrent_enrolments_with_one_token_exactly_one_wins(env: IngestEnv) -> None:
    """Single use holds under a race: one atomic UPDATE decides, the 49 others are told the token is used."""
    token = env.new_scanner().token
    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        answers = list(pool.map(lambda _: env.enrol(token), range(50)))
    codes = sorted(a.status_code for a in answers)
    assert codes == [200] + [403] * 49
    assert {a.json()["reason"] for a in answers if a.status_code == 403} == {"used_token"}
    assert _heartbeat(env, next(a for a in answers if a.status_code == 200).json()["key"]).status_code == 200


def test_used_expired_revoked_and_unknown_tokens_are_refused_with_their_reason(env: IngestEnv) -> None:
    used = env.new_scanner()
    assert env.enrol(used.token).status_code == 200
    refused = env.enrol(used.token)
    assert (refused.status_code, refused.json()["reason"]) == (403, "used_token")
    assert refused.headers["content-type"].startswith("application/problem+json")

    expired = env.new_scanner()
    env.query("config", "UPDATE enrolment_tokens SET expires_at = now() - interval '1 second' WHERE id = %s",
              (expired.token_id,))
    assert env.enrol(expired.token).json()["reason"] == "expired_token"

    revoked = env.new_scanner()
    env._with_config(lambda c: __import__("app.domain.scanners.service", fromlist=["x"]).revoke_token(
        c, "test", revoked.scanner.id, revoked.token_id))
    assert env.enrol(revoked.token).json()["reason"] == "revoked_token"

    unknown = env.enrol("mipoenrol_" + secrets.token_urlsafe(32))
    assert (unknown.status_code, unknown.json()["reason"]) == (401, "unknown_token")


def test_token_bound_to_a_network_refuses_other_addresses(env: IngestEnv) -> None:
    bound = env.new_scanner(bind_network="198.18.0.0/24")
    answer = env.enrol(bound.token)
    assert (answer.status_code, answer.json()["reason"]) == (403, "address_not_allowed")
    ok = env.new_scanner(bind_network="127.0.0.0/8")
    key = env.enrol(ok.token).json()["key"]
    assert _heartbeat(env, key).status_code == 200
    # The key inherits the binding: it is refused once the scanner's network no longer matches.
    env.query("config", "UPDATE scanners SET bound_network = '198.18.0.0/24' WHERE id = %s", (ok.scanner.id,))
    refused = _heartbeat_once_known(env, key, "address_not_allowed")
    assert (refused.status_code, refused.json()["reason"]) == (403, "address_not_allowed")


def test_revoked_disabled_unknown_and_malformed_keys_are_refused(env: IngestEnv) -> None:
    scanner_id, key = env.enrolled_key()
    assert _heartbeat(env, key).status_code == 200
    forged = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    assert _heartbeat(env, forged).json()["reason"] == "unknown_key"
    assert _heartbeat(env, "not-a-key").json()["reason"] == "unknown_key"
    assert httpx.post(env.url + "/scanner/v1/heartbeat", json={}, timeout=10).json()["reason"] == "unknown_key"
    env.query("config", "UPDATE scanners SET status = 'disabled' WHERE id = %s", (scanner_id,))
    assert _heartbeat_once_known(env, key, "scanner_disabled").json()["reason"] == "scanner_disabled"
    env.query("config", "UPDATE scanners SET status = 'active' WHERE id = %s", (scanner_id,))
    env.query("config", "UPDATE scanner_keys SET revoked_at = now() WHERE scanner_id = %s", (scanner_id,))
    refused = _heartbeat_once_known(env, key, "revoked_key")
    assert (refused.status_code, refused.json()["reason"]) == (403, "revoked_key")


def test_reinstall_with_a_fresh_token_keeps_the_scanner_identity(env: IngestEnv) -> None:
    """Same host (same machine-id hash), new token: same scanner id; the old key stops working."""
    host = secrets.token_hex(32)
    first = env.new_scanner()
    key1 = env.enrol(first.token, host).json()["key"]
    again = env.new_token(first.scanner.id)
    answer = env.enrol(again.token, host).json()
    assert answer["scanner_id"] == first.scanner.id
    assert _heartbeat_once_known(env, key1, "revoked_key").json()["reason"] == "revoked_key"
    assert _heartbeat(env, answer["key"]).status_code == 200
    # Even a token made for a brand-new scanner row lands on the host's existing identity.
    other = env.new_scanner()
    merged = env.enrol(other.token, host).json()
    assert merged["scanner_id"] == first.scanner.id
    events = env.query("config", "SELECT details->>'reinstall' FROM events WHERE class = 'scanner_enrolled'"
                       " AND scanner_id = %s ORDER BY id", (first.scanner.id,))
    assert events == [("false",), ("true",), ("true",)]
    assert env.query("config", "SELECT status FROM scanners WHERE id = %s", (other.scanner.id,)) == [("disabled",)]


def test_database_holds_no_token_or_key_in_clear(env: IngestEnv) -> None:
    """Every column of the token and key tables, read as text, contains neither secret."""
    enrolment = env.new_scanner()
    key = env.enrol(enrolment.token).json()["key"]
    secret_part = key.rsplit("_", 1)[1]
    token_part = enrolment.token.split("_", 1)[1]
    dump = env.query("config", "SELECT t::text FROM enrolment_tokens t UNION ALL SELECT k::text FROM scanner_keys k"
                     " UNION ALL SELECT s::text FROM scanners s UNION ALL SELECT a::text FROM audit_log a")
    text = "\n".join(r[0] for r in dump)
    assert token_part not in text and secret_part not in text
    # What is stored is the SHA-256 of each (bytea); the key id alone is public.
    import hashlib
    assert env.query("config", "SELECT count(*) FROM scanner_keys WHERE key_hash = %s",
                     (hashlib.sha256(key.encode()).digest(),)) == [(1,)]
    assert env.query("config", "SELECT count(*) FROM enrolment_tokens WHERE token_hash = %s",
                     (hashlib.sha256(enrolment.token.encode()).digest(),)) == [(1,)]


def test_install_script_pins_agent_hash_and_never_takes_the_token_as_argument(env: IngestEnv, tmp_path: Path) -> None:
    """install.sh is valid sh, embeds the SHA-256 of the agent ingest serves, and installs + enrols with it."""
    import hashlib
    import subprocess

    script = httpx.get(env.url + "/scanner/install.sh", timeout=10).text
    agent = httpx.get(env.url + "/scanner/agent.pyz", timeout=30).content
    digest = hashlib.sha256(agent).hexdigest()
    assert f"AGENT_SHA256='{digest}'" in script
    assert httpx.get(env.url + "/scanner/agent.pyz.sha256", timeout=10).text.split()[0] == digest
    path = tmp_path / "install.sh"
    # The test appliance's public URL is not this process's port: point the script at it.
    path.write_text(script.replace("SERVER_URL='https://127.0.0.1'", f"SERVER_URL='{env.url}'"))
    assert subprocess.run(["sh", "-n", str(path)], check=False).returncode == 0
    bad = subprocess.run(["sh", str(path), "mipoenrol_x"], capture_output=True, text=True, check=False)
    assert bad.returncode != 0 and "never an argument" in bad.stderr
    enrolment = env.new_scanner()
    root = tmp_path / "root"
    done = subprocess.run(["sh", str(path), "--root", str(root), "--no-systemd", "--token-file", "-"],
                          input=enrolment.token + "\n", capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (root / "opt/mipo-scanner/agent.pyz").read_bytes() == agent
    key = (root / "etc/mipo-scanner/key").read_text().strip()
    assert (root / "etc/mipo-scanner/key").stat().st_mode & 0o777 == 0o640
    assert _heartbeat(env, key).status_code == 200


@pytest.mark.parametrize("field", ["hostname", "version"])
def test_enrolment_text_with_control_characters_is_refused_and_the_token_stays_usable(env: IngestEnv,
                                                                                      field: str) -> None:
    """PostgreSQL text cannot hold NUL: refused as malformed (naming the field), not a failed insert."""
    token = env.new_scanner().token
    body = {"token": token, "host_id": secrets.token_hex(32), "hostname": "t", "version": "0.1.0"}
    answer = httpx.post(env.url + "/scanner/v1/enrol", timeout=30, json={**body, field: "bad\u0000name"})
    assert answer.status_code == 422, answer.text
    assert answer.json()["reason"] == "malformed" and answer.json().get("field") == field
    assert env.enrol(token).status_code == 200

