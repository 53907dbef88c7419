"""The manager's scanner admin API: add a scanner (token + pinned install command shown once), list,
tokens, revoke, rotate, disable — each refused or honoured by ingest accordingly, each audited."""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from litestar.testing import TestClient

from app.roles.ingest.app import create_app as create_ingest
from tests.conftest import SettingsFactory
from tests.support.manager import manager_client


def appliance_ca(tmp: Path) -> tuple[Path, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mipo appliance CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(key, hashes.SHA256()))
    path = tmp / "ca.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path, hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def _beat(ingest: TestClient, key: str) -> tuple[int, str]:
    answer = ingest.post("/scanner/v1/heartbeat", json={"version": "0.1.0"}, headers={"X-Mipo-Key": key})
    return answer.status_code, answer.json().get("reason", "")


def _beat_once_known(ingest: TestClient, key: str, expected: tuple[int, str]) -> tuple[int, str]:
    """After an admin change: ingest's key cache hears of it at once, and never later than its bound (2 s)."""
    deadline = time.monotonic() + 3.0
    while (answer := _beat(ingest, key)) != expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return answer


def _enrol(ingest: TestClient, token: str, host: str = "ab" * 32) -> dict:
    return ingest.post("/scanner/v1/enrol", json={"token": token, "host_id": host}).json()


def test_scanner_lifecycle_through_the_admin_api(migrated: SettingsFactory, tmp_path: Path) -> None:
    ca_file, fingerprint = appliance_ca(tmp_path)
    overrides = {"scanner": {"ca_file": str(ca_file)}, "public_url": "https://mipo.lab.test"}
    with manager_client(migrated("mipo_manager", **overrides), role="admin") as admin, \
            TestClient(create_ingest(migrated("mipo_ingest", **overrides))) as ingest:
        created = admin.post("/api/scanners", json={"name": "edge-a", "rate_limit": 5000})
        assert created.status_code == 201, created.text
        body = created.json()
        token, command = body["token"], body["install_command"]
        assert body["scanner"]["status"] == "pending" and body["scanner"]["online"] is False
        # The command pins the appliance CA and never carries the token.
        assert body["ca_sha256"] == fingerprint and f"--ca-sha256 {fingerprint}" in command
        assert "https://mipo.lab.test/scanner/install.sh" in command and "BEGIN CERTIFICATE" in command
        assert token not in command
        # ...and the script ingest serves embeds the same CA, which it checks against that fingerprint.
        script = ingest.get("/scanner/install.sh").text
        assert ca_file.read_text().strip() in script and "SERVER_URL='https://mipo.lab.test'" in script

        scanner_id = body["scanner"]["id"]
        key = _enrol(ingest, token)["key"]
        assert _beat(ingest, key) == (200, "")
        listed = admin.get("/api/scanners").json()
        assert [(s["name"], s["status"], s["rate_limit"]) for s in listed] == [("edge-a", "active", 5000)]

        spare = admin.post(f"/api/scanners/{scanner_id}/tokens", json={}).json()
        revoked = admin.post(f"/api/scanners/{scanner_id}/tokens/{spare['token_id']}/revoke")
        assert revoked.status_code == 200 and revoked.json()["revoked_at"]
        assert _enrol(ingest, spare["token"])["reason"] == "revoked_token"
        assert len(admin.get(f"/api/scanners/{scanner_id}/tokens").json()) == 2

        rotated = admin.post(f"/api/scanners/{scanner_id}/rotate-key")
        assert rotated.status_code == 201
        assert _beat_once_known(ingest, key, (403, "revoked_key")) == (403, "revoked_key")
        again = _enrol(ingest, rotated.json()["token"])
        assert again["scanner_id"] == scanner_id
        new_key = again["key"]
        assert _beat(ingest, new_key) == (200, "")

        assert admin.post(f"/api/scanners/{scanner_id}/disable").json()["status"] == "disabled"
        assert _beat_once_known(ingest, new_key, (403, "scanner_disabled")) == (403, "scanner_disabled")
        assert admin.post(f"/api/scanners/{scanner_id}/enable").json()["status"] == "active"
        assert _beat_once_known(ingest, new_key, (200, "")) == (200, "")
        assert admin.patch(f"/api/scanners/{scanner_id}", json={"concurrency": 100}).json()["concurrency"] == 100

        assert admin.post("/api/scanners", json={"name": "edge-a"}).json()["reason"] == "name_taken"
        assert admin.post("/api/scanners", json={"name": "bad name!"}).status_code in (400, 422)
        assert admin.post("/api/scanners", json={"name": "edge-b", "bind_network": "nope"}).status_code == 422
        assert admin.get("/api/scanners/999999").status_code == 404

        actions = [r["action"] for r in admin.get("/api/audit", params={"object_type": "scanner"}).json()]
        for action in ("scanner.create", "enrolment_token.create", "enrolment_token.revoke",
                       "scanner.rotate_key", "scanner.disable", "scanner.enable", "scanner.update"):
            assert action in actions, actions
        audit_text = str(admin.get("/api/audit", params={"object_type": "scanner"}).json())
        assert token not in audit_text and spare["token"] not in audit_text


def test_only_admins_add_scanners_and_viewers_can_list(migrated: SettingsFactory) -> None:
    settings = migrated("mipo_manager")
    with manager_client(settings, role="operator") as operator:
        assert operator.post("/api/scanners", json={"name": "x1"}).status_code == 403
    with manager_client(settings, role="viewer") as viewer:
        assert viewer.get("/api/scanners").status_code == 200
        assert viewer.post("/api/scanners", json={"name": "x2"}).status_code == 403
