"""The lab's state file: where the booted lab hosts are and how to reach them (read by `inventory.py`).

Path: ``$MIPO_LAB_DIR/lab.json``, by default ``/var/lib/mipo-lab/lab.json`` (see `state_dir()`).
It is (re)written by every `mipo lab up` and removed by `mipo lab destroy`. Read it with
`load_lab_state()`, which returns a `LabState` (or raises `LabError` saying to run `mipo lab up`):
`host(name)`, `group(name)`, `groups` (group → host names), `ssh_command(name, *cmd)` and
`run(name, "shell command")` (SSH as root; a non-zero exit raises `LabError` unless ``check=False``).
After booting, `mipo lab up` calls `appliance.deploy.deploy_lab(state)` when that exists.

Format (JSON, ``version`` 1)::

    {
      "version": 1,
      "state_dir": "/var/lib/mipo-lab",
      "image": "/var/cache/mipo/images/trixie-…",      # the read-only lower layer of every host
      "ssh_user": "root",
      "ssh_key": "/var/lib/mipo-lab/ssh/id_ed25519",   # private key; the lab's hosts trust its .pub
      "networks": {
        "external": {"bridge": "mipo-ext", "cidr": "198.18.0.0/24", "gateway": "198.18.0.1",
                     "apt_proxy": "http://198.18.0.1:3143"},
        "internal": {"bridge": "mipo-int", "cidr": "198.18.1.0/24", "gateway": "198.18.1.1",
                     "apt_proxy": "http://198.18.1.1:3143"}
      },
      "hosts": [
        {"name": "edge", "groups": ["edge"],
         "addresses": {"external": "198.18.0.10", "internal": "198.18.1.10"},
         "ssh_address": "198.18.1.10"},
        {"name": "manager", "groups": ["manager"], "addresses": {"internal": "198.18.1.11"},
         "ssh_address": "198.18.1.11"},
        …
      ]
    }

Groups: ``edge``, ``manager``, ``ingest`` (ingest-1, ingest-2), ``dispatcher``, ``backup``, ``db``,
``scanners`` (scanner-a, scanner-b), ``target``. ``ssh_address`` is the internal address when a host
has one. The gateway addresses are this machine (the deployer): SSH to lab hosts comes from them,
and they are the only way out of the lab (the apt proxy on port 3143). Every host already has
``/etc/apt/apt.conf.d/01proxy`` pointing at its network's proxy, and ``/etc/hosts`` naming every lab
host it shares a network with.

SSH options that work for every lab host (host keys change when a host is recreated)::

    ssh -i <ssh_key> -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null root@<ssh_address>
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.lab.topology import HOSTS, NETWORKS

STATE_VERSION = 1
SSH_OPTIONS = (
    "-o", "StrictHostKeyChecking=no",
    "-o", "UserKnownHostsFile=/dev/null",
    "-o", "LogLevel=ERROR",
    "-o", "BatchMode=yes",
    "-o", "ConnectTimeout=5",
)


class LabError(RuntimeError):
    """A lab step failed; the message says what failed and what to do."""


def state_dir() -> Path:
    return Path(os.environ.get("MIPO_LAB_DIR", "/var/lib/mipo-lab"))


def state_file(root: Path | None = None) -> Path:
    return (root or state_dir()) / "lab.json"


@dataclass(frozen=True)
class LabHost:
    name: str
    groups: tuple[str, ...]
    addresses: dict[str, str]
    ssh_address: str


@dataclass(frozen=True)
class LabNetwork:
    bridge: str
    cidr: str
    gateway: str
    apt_proxy: str


@dataclass(frozen=True)
class LabState:
    """The lab as written to ``lab.json``: hosts by name and group, networks, SSH key."""

    state_dir: Path
    image: Path
    ssh_user: str
    ssh_key: Path
    networks: dict[str, LabNetwork]
    hosts: tuple[LabHost, ...]

    def host(self, name: str) -> LabHost:
        for host in self.hosts:
            if host.name == name:
                return host
        raise LabError(f"no lab host named {name!r} (lab hosts: {', '.join(h.name for h in self.hosts)})")

    def group(self, group: str) -> list[LabHost]:
        return [h for h in self.hosts if group in h.groups]

    @property
    def groups(self) -> dict[str, list[str]]:
        """Group name → host names, in host order (the shape a pyinfra inventory wants)."""
        out: dict[str, list[str]] = {}
        for host in self.hosts:
            for group in host.groups:
                out.setdefault(group, []).append(host.name)
        return out

    def ssh_command(self, name: str, *command: str) -> list[str]:
        """argv for `ssh` into one host as root with the lab key (command optional)."""
        host = self.host(name)
        return ["ssh", "-i", str(self.ssh_key), *SSH_OPTIONS, f"{self.ssh_user}@{host.ssh_address}", *command]

    def run(
        self, name: str, command: str, *, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run a shell command on one host over SSH; with check, a non-zero exit raises `LabError`."""
        result = subprocess.run(self.ssh_command(name, command), capture_output=True, text=True, timeout=timeout,
                                check=False)
        if check and result.returncode != 0:
            raise LabError(f"on {name}: `{command}` exited {result.returncode}: {result.stderr.strip()[-500:]}")
        return result

    def to_json(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "state_dir": str(self.state_dir),
            "image": str(self.image),
            "ssh_user": self.ssh_user,
            "ssh_key": str(self.ssh_key),
            "networks": {key: vars(net) for key, net in self.networks.items()},
            "hosts": [
                {"name": h.name, "groups": list(h.groups), "addresses": h.addresses, "ssh_address": h.ssh_address}
                for h in self.hosts
            ],
        }


def build_state(root: Path, image: Path, ssh_key: Path) -> LabState:
    """The state for the fixed topology (what `mipo lab up` writes)."""
    networks = {
        key: LabNetwork(bridge=n.bridge, cidr=n.cidr, gateway=n.gateway, apt_proxy=n.proxy_url)
        for key, n in NETWORKS.items()
    }
    hosts = tuple(LabHost(h.name, h.groups, h.addresses, h.ssh_address) for h in HOSTS)
    return LabState(root, image, "root", ssh_key, networks, hosts)


def save_lab_state(state: LabState) -> Path:
    path = state_file(state.state_dir)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(state.to_json(), indent=2) + "\n")
    tmp.replace(path)  # readers never see a half-written file
    return path


def parse_lab_state(data: dict[str, Any]) -> LabState:
    if data.get("version") != STATE_VERSION:
        raise LabError(f"lab state has version {data.get('version')!r}, expected {STATE_VERSION}: "
                       "run `mipo lab up` to rewrite it")
    return LabState(
        state_dir=Path(data["state_dir"]),
        image=Path(data["image"]),
        ssh_user=data["ssh_user"],
        ssh_key=Path(data["ssh_key"]),
        networks={key: LabNetwork(**net) for key, net in data["networks"].items()},
        hosts=tuple(
            LabHost(h["name"], tuple(h["groups"]), dict(h["addresses"]), h["ssh_address"]) for h in data["hosts"]
        ),
    )


def load_lab_state(path: Path | None = None) -> LabState:
    """Read ``lab.json`` (default `state_file()`); raises `LabError` when the lab was never brought up."""
    path = path or state_file()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise LabError(f"no lab state at {path}: run `mipo lab up` first") from None
    except (OSError, ValueError) as exc:
        raise LabError(f"cannot read lab state {path} ({exc}): run `mipo lab destroy` then `mipo lab up`") from None
    try:
        return parse_lab_state(data)
    except (KeyError, TypeError) as exc:
        raise LabError(f"lab state {path} is malformed ({exc}): run `mipo lab up` to rewrite it") from None
