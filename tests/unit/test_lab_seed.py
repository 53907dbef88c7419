"""Files written into a lab host's root before it boots, and the processes the lab starts itself."""

from __future__ import annotations

import os
import stat
import sys
import time
from pathlib import Path

from cryptography import x509

from appliance.lab import procs
from appliance.lab.hosts import seed
from appliance.lab.target import CERT, KEY
from appliance.lab.topology import TARGET_HTTP_UNIT, TARGET_HTTPS_UNIT, host_spec


def test_seed_writes_identity_network_key_and_proxy(tmp_path: Path) -> None:
    """A host boots with its name, static addresses, the lab key as root's only key and the apt proxy."""
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/resolv.conf").symlink_to("/run/somewhere")  # the image's may point elsewhere
    seed(host_spec("edge"), tmp_path, "ssh-ed25519 AAAA mipo-lab\n")
    assert (tmp_path / "etc/hostname").read_text() == "edge\n"
    assert "Address=198.18.0.10/24" in (tmp_path / "etc/systemd/network/10-mipo-ext0.network").read_text()
    assert "Address=198.18.1.10/24" in (tmp_path / "etc/systemd/network/10-mipo-int0.network").read_text()
    assert "nameserver" not in (tmp_path / "etc/resolv.conf").read_text()
    assert not (tmp_path / "etc/resolv.conf").is_symlink()
    keys = tmp_path / "root/.ssh/authorized_keys"
    assert keys.read_text() == "ssh-ed25519 AAAA mipo-lab\n"
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "root/.ssh").stat().st_mode) == 0o700
    assert '"http://198.18.1.1:3143"' in (tmp_path / "etc/apt/apt.conf.d/01proxy").read_text()
    assert not (tmp_path / CERT).exists()  # only `target` gets the target services


def test_seed_gives_each_host_its_own_stable_machine_id(tmp_path: Path) -> None:
    """Distinct per host, the same on every re-seed of one lab, different in a lab with another key."""
    def machine_id(name: str, key: str) -> str:
        root = tmp_path / f"{name}-{key}"
        seed(host_spec(name), root, f"ssh-ed25519 {key} mipo-lab\n")
        seed(host_spec(name), root, f"ssh-ed25519 {key} mipo-lab\n")  # again: a reboot re-seeds
        return (root / "etc/machine-id").read_text()

    ids = {name: machine_id(name, "AAAA") for name in ("edge", "db", "scanner-a", "scanner-b")}
    assert len(set(ids.values())) == 4 and all(len(v) == 33 and v.endswith("\n") for v in ids.values())
    assert machine_id("edge", "BBBB") != ids["edge"]


def test_target_gets_self_signed_services_once(tmp_path: Path) -> None:
    """`target` gets a self-signed certificate (kept across re-seeding), a root-only key and enabled units."""
    seed(host_spec("target"), tmp_path, "key\n")
    cert = x509.load_pem_x509_certificate((tmp_path / CERT).read_bytes())
    assert cert.issuer == cert.subject
    assert stat.S_IMODE((tmp_path / KEY).stat().st_mode) == 0o600
    wants = tmp_path / "etc/systemd/system/multi-user.target.wants"
    for unit in (TARGET_HTTP_UNIT, TARGET_HTTPS_UNIT):
        assert os.readlink(wants / unit) == f"/etc/systemd/system/{unit}"
        assert "ExecStart=/usr/bin/python3" in (tmp_path / "etc/systemd/system" / unit).read_text()
    before = (tmp_path / CERT).read_bytes()
    seed(host_spec("target"), tmp_path, "key\n")
    assert (tmp_path / CERT).read_bytes() == before


def test_detached_process_is_found_and_stopped(tmp_path: Path) -> None:
    """The lab finds its own processes by pid file and command line, and stops them."""
    marker = f"import time; time.sleep(600)  # {tmp_path}"
    pid = procs.start_detached([sys.executable, "-c", marker], tmp_path / "log", tmp_path / "pid").pid
    for _ in range(100):  # right after the start its /proc command line may still be empty
        if procs.alive(pid, str(tmp_path)):
            break
        time.sleep(0.05)
    assert procs.read_pid(tmp_path / "pid", str(tmp_path)) == pid
    assert procs.read_pid(tmp_path / "pid", "some other command") is None  # a recycled pid is not ours
    assert procs.stop(pid, str(tmp_path), timeout=10) is True
    assert procs.read_pid(tmp_path / "pid", str(tmp_path)) is None
