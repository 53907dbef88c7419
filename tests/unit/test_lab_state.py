"""lab.json: what `mipo lab up` writes and `inventory.py` reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from appliance.lab.control import acquire_lease, release_lease
from appliance.lab.state import LabError, LabState, build_state, load_lab_state, save_lab_state, state_file


def _state(tmp_path: Path) -> LabState:
    return build_state(tmp_path, Path("/var/cache/mipo/images/trixie-x"), tmp_path / "ssh" / "id_ed25519")


def test_state_round_trips_through_the_file(tmp_path: Path) -> None:
    """What `up` saves is exactly what `load_lab_state` gives back."""
    state = _state(tmp_path)
    path = save_lab_state(state)
    assert path == tmp_path / "lab.json"
    assert load_lab_state(path) == state


def test_state_file_documents_hosts_groups_and_key(tmp_path: Path) -> None:
    """The JSON carries, per host, its groups, addresses and SSH address, plus the key and the proxies."""
    data = json.loads(save_lab_state(_state(tmp_path)).read_text())
    edge = next(h for h in data["hosts"] if h["name"] == "edge")
    assert edge == {"name": "edge", "groups": ["edge"],
                    "addresses": {"external": "198.18.0.10", "internal": "198.18.1.10"},
                    "ssh_address": "198.18.1.10"}
    assert data["ssh_key"] == str(tmp_path / "ssh" / "id_ed25519")
    assert data["networks"]["internal"]["apt_proxy"] == "http://198.18.1.1:3143"
    assert data["networks"]["external"] == {"bridge": "mipo-ext", "cidr": "198.18.0.0/24",
                                            "gateway": "198.18.0.1", "apt_proxy": "http://198.18.0.1:3143"}


def test_groups_and_ssh_command(tmp_path: Path) -> None:
    state = _state(tmp_path)
    assert state.groups["ingest"] == ["ingest-1", "ingest-2"]
    assert [h.name for h in state.group("scanners")] == ["scanner-a", "scanner-b"]
    argv = state.ssh_command("db", "ss -ltn")
    assert argv[:3] == ["ssh", "-i", str(tmp_path / "ssh" / "id_ed25519")]
    assert argv[-2:] == ["root@198.18.1.20", "ss -ltn"]
    with pytest.raises(LabError, match="no lab host named 'nope'"):
        state.host("nope")


def test_missing_state_says_to_bring_the_lab_up(tmp_path: Path) -> None:
    with pytest.raises(LabError, match="run `mipo lab up` first"):
        load_lab_state(state_file(tmp_path))


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "cannot read lab state"),
    ('{"version": 99}', "version 99"),
    ('{"version": 1, "hosts": []}', "malformed"),
])
def test_bad_state_is_a_clear_error(tmp_path: Path, content: str, message: str) -> None:
    """A damaged or foreign lab.json is reported with what to do, never a traceback."""
    path = state_file(tmp_path)
    path.write_text(content)
    with pytest.raises(LabError, match=message):
        load_lab_state(path)


def test_last_lease_holder_is_told_it_is_last(tmp_path: Path) -> None:
    """Sessions sharing a lab: a live holder keeps it up; a dead holder's lease does not count."""
    mine = acquire_lease(tmp_path)
    (tmp_path / "leases" / "1").write_text("")  # pid 1 is always alive: another user of the lab
    assert release_lease(mine) is False
    (tmp_path / "leases" / "1").unlink()
    (tmp_path / "leases" / "999999999").write_text("")  # no such pid: a session that died
    mine = acquire_lease(tmp_path)
    assert release_lease(mine) is True
    assert list((tmp_path / "leases").iterdir()) == []
