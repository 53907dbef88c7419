"""This machine's side of the lab network: the two bridges and the nft table that isolates them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from appliance.lab.state import LabError
from appliance.lab.topology import APT_PROXY_PORT, NETWORKS

NFT_TABLE = "mipo_lab"
# Reject rather than drop: a refused lab connection fails at once instead of hanging until a timeout.
REJECT = "reject with icmpx type admin-prohibited"


def run(step: str, cmd: list[str], *, input_text: str | None = None) -> str:
    result = subprocess.run(cmd, input=input_text, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise LabError(f"{step} failed: `{' '.join(cmd)}`: {detail[-1] if detail else f'exit {result.returncode}'}")
    return result.stdout


def link_exists(name: str) -> bool:
    # Asked of the kernel (not /sys/class/net, which shows the network namespace /sys was mounted in).
    return subprocess.run(["ip", "link", "show", "dev", name], capture_output=True, check=False).returncode == 0


def _addresses(dev: str) -> list[str]:
    out = run("read addresses", ["ip", "-j", "-4", "addr", "show", "dev", dev])
    return [f"{a['local']}/{a['prefixlen']}" for link in json.loads(out or "[]") for a in link.get("addr_info", [])]


def ensure_bridges() -> None:
    """Create both bridges with this machine's gateway address on each (idempotent)."""
    for net in NETWORKS.values():
        if not link_exists(net.bridge):
            run(f"create bridge {net.bridge}", ["ip", "link", "add", net.bridge, "type", "bridge"])
        # IPv4 only: no link-local IPv6 on the lab bridges, so nothing is reachable by a path we do not filter.
        Path(f"/proc/sys/net/ipv6/conf/{net.bridge}/disable_ipv6").write_text("1\n")
        # Nothing received on a lab bridge is routed, even where this machine forwards for others
        # (Docker sets the global switch); the nft table below is the second, independent barrier.
        Path(f"/proc/sys/net/ipv4/conf/{net.bridge}/forwarding").write_text("0\n")
        wanted = f"{net.gateway}/24"
        if wanted not in _addresses(net.bridge):
            run(f"address bridge {net.bridge}", ["ip", "addr", "replace", wanted, "dev", net.bridge])
        run(f"bring up bridge {net.bridge}", ["ip", "link", "set", net.bridge, "up"])


def remove_bridges() -> None:
    for net in NETWORKS.values():
        if link_exists(net.bridge):
            run(f"delete bridge {net.bridge}", ["ip", "link", "del", net.bridge])


def nft_ruleset() -> str:
    """The lab's own nft table: no forwarding into, out of or between the lab bridges; lab hosts may
    open connections to this machine only for the apt proxy (and ping)."""
    bridges = ", ".join(f'"{n.bridge}"' for n in NETWORKS.values())
    forward = "\n".join(
        f'    iifname "{n.bridge}" oifname != "{n.bridge}" {REJECT}\n'
        f'    oifname "{n.bridge}" iifname != "{n.bridge}" {REJECT}'
        for n in NETWORKS.values()
    )
    return (
        f"table inet {NFT_TABLE}\n"
        f"delete table inet {NFT_TABLE}\n"  # replace atomically: the add above makes the delete always valid
        f"table inet {NFT_TABLE} {{\n"
        "  chain forward {\n"
        # Frames bridged within one bridge pass this hook with iif = oif = that bridge (br_netfilter).
        "    type filter hook forward priority filter - 10; policy accept;\n"
        f"{forward}\n"
        "  }\n"
        "  chain input {\n"
        "    type filter hook input priority filter - 10; policy accept;\n"
        f"    iifname {{ {bridges} }} ct state established,related accept\n"
        f"    iifname {{ {bridges} }} tcp dport {APT_PROXY_PORT} accept\n"
        f"    iifname {{ {bridges} }} icmp type echo-request accept\n"
        f"    iifname {{ {bridges} }} {REJECT}\n"
        "  }\n"
        "}\n"
    )


def ensure_firewall() -> None:
    run("load the lab nft table", ["nft", "-f", "-"], input_text=nft_ruleset())


def remove_firewall() -> None:
    if subprocess.run(["nft", "list", "table", "inet", NFT_TABLE], capture_output=True, check=False).returncode == 0:
        run("delete the lab nft table", ["nft", "delete", "table", "inet", NFT_TABLE])


def bridge_forwarding_enabled(bridge: str) -> bool:
    """Whether IPv4 packets arriving on this bridge may be routed elsewhere (must stay off)."""
    return Path(f"/proc/sys/net/ipv4/conf/{bridge}/forwarding").read_text().strip() != "0"


def attach(interface: str, bridge: str) -> None:
    run(f"attach {interface} to {bridge}", ["ip", "link", "set", interface, "master", bridge, "up"])
