"""The lab's fixed shape: two bridges, ten hosts, their groups and addresses (pure data)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Network:
    """One lab bridge on this machine; the gateway address is this machine's side of it."""

    key: str  # "external" or "internal"
    bridge: str
    prefix: str  # first three octets, e.g. "198.18.0"
    interface: str  # the host's interface name inside each container attached to this net

    @property
    def cidr(self) -> str:
        return f"{self.prefix}.0/24"

    @property
    def gateway(self) -> str:
        return f"{self.prefix}.1"

    @property
    def proxy_url(self) -> str:
        return f"http://{self.gateway}:{APT_PROXY_PORT}"


@dataclass(frozen=True)
class HostSpec:
    """One lab host: the groups it belongs to and its last octet on each network it joins."""

    name: str
    groups: tuple[str, ...]
    octets: dict[str, int] = field(hash=False)

    def address(self, network: str) -> str | None:
        octet = self.octets.get(network)
        return None if octet is None else f"{NETWORKS[network].prefix}.{octet}"

    @property
    def addresses(self) -> dict[str, str]:
        return {net: f"{NETWORKS[net].prefix}.{octet}" for net, octet in self.octets.items()}

    @property
    def networks(self) -> list[Network]:
        return [NETWORKS[net] for net in self.octets]

    @property
    def ssh_address(self) -> str:
        """Where the deployer connects: the internal address when the host has one (edge, app hosts)."""
        return self.address("internal") or self.addresses["external"]

    def host_side_interface(self, network: str) -> str:
        # Linux interface names are at most 15 bytes: "mx-"/"mi-" + the host name (≤ 12) fits.
        return ("mx-" if network == "external" else "mi-") + self.name


# Not apt-cacher-ng's default 3142: installing the package on a systemd machine starts a system
# apt-cacher-ng on 3142 on every address, and the lab runs its own (own config, bound to the gateways).
APT_PROXY_PORT = 3143
TEST_RANGE = "198.18.0.0/15"  # RFC 2544 benchmarking range: never routed on the internet

NETWORKS: dict[str, Network] = {
    "external": Network("external", "mipo-ext", "198.18.0", "ext0"),
    "internal": Network("internal", "mipo-int", "198.18.1", "int0"),
}

HOSTS: tuple[HostSpec, ...] = (
    HostSpec("edge", ("edge",), {"external": 10, "internal": 10}),
    HostSpec("manager", ("manager",), {"internal": 11}),
    HostSpec("ingest-1", ("ingest",), {"internal": 12}),
    HostSpec("ingest-2", ("ingest",), {"internal": 13}),
    HostSpec("dispatcher", ("dispatcher",), {"internal": 14}),
    HostSpec("backup", ("backup",), {"internal": 15}),
    HostSpec("db", ("db",), {"internal": 20}),
    HostSpec("scanner-a", ("scanners",), {"external": 21}),
    HostSpec("scanner-b", ("scanners",), {"external": 22}),
    HostSpec("target", ("target",), {"external": 30}),
)

# Services the lab itself installs on `target` (the appliance deploy never touches them).
TARGET_HTTPS_PORT = 443
TARGET_HTTP_PORT = 8080
TARGET_HTTP_UNIT = "lab-target-http.service"
TARGET_HTTPS_UNIT = "lab-target-https.service"


def host_spec(name: str) -> HostSpec:
    for spec in HOSTS:
        if spec.name == name:
            return spec
    known = ", ".join(h.name for h in HOSTS)
    raise KeyError(f"no lab host named {name!r} (lab hosts: {known})")


def hosts_file(spec: HostSpec) -> str:
    """/etc/hosts for one host: every lab host it shares a network with, by its address on that network."""
    lines = ["127.0.0.1\tlocalhost", f"127.0.1.1\t{spec.name}", "::1\t\tlocalhost ip6-localhost ip6-loopback", ""]
    mine = list(spec.octets)
    for other in HOSTS:
        if other.name == spec.name:
            continue
        # Prefer the internal address: that is the path app traffic takes between internal hosts.
        shared = [net for net in ("internal", "external") if net in mine and net in other.octets]
        if shared:
            lines.append(f"{other.address(shared[0])}\t{other.name}")
    return "\n".join(lines) + "\n"


def network_file(network: Network, address: str) -> str:
    """A systemd-networkd file: static address, no gateway, no DHCP, no IPv6 autoconfiguration."""
    return (
        "# Written by the mipo lab: static lab address, deliberately no Gateway= (no route out).\n"
        f"[Match]\nName={network.interface}\n\n"
        "[Link]\nRequiredForOnline=yes\n\n"
        f"[Network]\nAddress={address}/24\nDHCP=no\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n"
    )


def apt_proxy_conf(spec: HostSpec) -> str:
    network = NETWORKS["internal" if "internal" in spec.octets else "external"]
    return f'Acquire::http::Proxy "{network.proxy_url}";\n'
