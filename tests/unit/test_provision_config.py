"""The appliance file: what the deploy accepts, what it refuses (naming the key), what each host gets."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

import pytest

from app.config import ConfigError, parse_settings
from appliance.deploy import _toml_document, lab_appliance_document
from appliance.lab.state import build_state
from provision.config import Appliance, load_appliance, parse_appliance
from provision.render import mipo_toml


def lab_document(tmp_path: Path) -> dict[str, Any]:
    return lab_appliance_document(build_state(tmp_path, Path("/image"), tmp_path / "id_ed25519"))


@pytest.fixture()
def appliance(tmp_path: Path) -> Appliance:
    return parse_appliance(lab_document(tmp_path), "lab")


def test_lab_appliance_file_round_trips_through_toml(tmp_path: Path) -> None:
    """The generated lab file is valid TOML that validates to the same hosts and groups."""
    path = tmp_path / "appliance.toml"
    path.write_text(_toml_document(lab_document(tmp_path)))
    loaded = load_appliance(path)
    assert [h.name for h in loaded.group("ingest")] == ["ingest-1", "ingest-2"]
    assert loaded.one("db").address == "198.18.1.20"
    assert loaded.public_url == "https://198.18.0.10"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["hosts"].append({"name": "d2", "groups": ["dispatcher"], "address": "198.18.1.99"}),
         "group 'dispatcher' has 2 hosts, expected exactly 1"),
        (lambda d: d["hosts"][0].update(address="not-an-ip"), "hosts[0].address: expected an IP address"),
        (lambda d: d["hosts"][0].update(groups=["edge", "web"]), "unknown group 'web'"),
        (lambda d: d["deploy"].update(admin_networks=[]), "deploy.admin_networks"),
        (lambda d: d["settings"].update(databases={}), "settings.databases: set by the deploy"),
        (lambda d: d["settings"].update(scope={"authorised": ["10.0.0.0/33"]}), "authorised[0]"),
        (lambda d: d["deploy"].update(colour="blue"), "colour"),
        (lambda d: d["deploy"].update(package_proxy="proxy:3142"), "deploy.package_proxy"),
    ],
)
def test_bad_appliance_files_are_refused_naming_the_key(tmp_path: Path, mutate: Any, message: str) -> None:
    """A wrong appliance file stops the deploy before any host is touched, and says which key is wrong."""
    doc = copy.deepcopy(lab_document(tmp_path))
    mutate(doc)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_appliance(doc, "appliance.toml")


@pytest.mark.parametrize("name", ["manager", "ingest-1", "ingest-2", "dispatcher", "backup"])
def test_each_app_host_gets_valid_settings_with_its_own_database_login(appliance: Appliance, name: str) -> None:
    """mipo.toml of every app host is accepted by the app and logs in as that host's service role over verified TLS."""
    settings = parse_settings(tomllib.loads(mipo_toml(appliance, appliance.host(name))))
    role = {"ingest-1": "ingest", "ingest-2": "ingest"}.get(name, name)
    for db in (settings.databases.config, settings.databases.jobs, settings.databases.results):
        assert db.user == f"mipo_{role}"
        assert db.password_credential == f"db-mipo_{role}"
        assert db.sslmode == "verify-full"
        assert db.host == "198.18.1.20"
    assert settings.manager.trusted_proxies == ["198.18.1.10/32"]


@pytest.mark.parametrize("name", ["manager", "ingest-1", "dispatcher", "backup"])
def test_rendered_settings_hold_no_secret(appliance: Appliance, name: str) -> None:
    """Passwords never appear in mipo.toml: only names of credential files."""
    text = mipo_toml(appliance, appliance.host(name))
    assert "password =" not in text and "password=" not in text


def test_only_manager_and_backup_get_the_owner_password(appliance: Appliance) -> None:
    """The schema owner's password is on the hosts that migrate or restore, nowhere else."""
    owners = [h.name for h in appliance.hosts if "db-mipo_owner" in appliance.credentials_of(h)]
    assert owners == ["manager", "backup"]


def test_each_ingest_listens_on_its_own_address(appliance: Appliance) -> None:
    """Both ingest nodes serve (on their own address), so Traefik can balance between them."""
    listens = {n: parse_settings(tomllib.loads(mipo_toml(appliance, appliance.host(n)))).ingest.listen
               for n in ("ingest-1", "ingest-2")}
    assert listens == {"ingest-1": "198.18.1.12:8002", "ingest-2": "198.18.1.13:8002"}


def test_example_appliance_file_is_valid() -> None:
    """The example operators copy passes `mipo check` as shipped."""
    example = Path(__file__).resolve().parents[2] / "provision" / "appliance.example.toml"
    appliance = load_appliance(example)
    assert appliance.public_url == "https://mipo.example.net"
    assert appliance.proxy == ("10.20.0.5", 3142)


def test_half_an_operator_certificate_is_refused(tmp_path: Path) -> None:
    """An operator-supplied edge certificate needs its key and CA too."""
    doc = lab_document(tmp_path)
    doc["deploy"]["edge_certificate"] = str(tmp_path / "edge.crt")
    with pytest.raises(ConfigError, match="give all three"):
        parse_appliance(doc, "appliance.toml")


@pytest.mark.parametrize("name", ["manager", "ingest-1"])
def test_scanners_are_told_the_ca_to_pin(appliance: Appliance, name: str) -> None:
    """Install commands embed the CA that signed the edge certificate (the appliance CA by default)."""
    settings = parse_settings(tomllib.loads(mipo_toml(appliance, appliance.host(name))))
    assert settings.scanner.ca_file == "/etc/mipo/ca.crt"
