"""The lab's fixed topology and the per-host files derived from it."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from appliance.lab.aptproxy import acng_conf
from appliance.lab.hosts import HostDirs, nspawn_argv
from appliance.lab.network import nft_ruleset
from appliance.lab.topology import (
    HOSTS,
    NETWORKS,
    TEST_RANGE,
    apt_proxy_conf,
    host_spec,
    hosts_file,
    network_file,
)

LAB_RANGE = ipaddress.ip_network(TEST_RANGE)


def test_groups_are_the_appliance_roles() -> None:
    """Every group the deploy and the tests rely on exists with its hosts."""
    groups: dict[str, list[str]] = {}
    for h in HOSTS:
        for g in h.groups:
            groups.setdefault(g, []).append(h.name)
    assert groups == {
        "edge": ["edge"], "manager": ["manager"], "ingest": ["ingest-1", "ingest-2"],
        "dispatcher": ["dispatcher"], "backup": ["backup"], "db": ["db"],
        "scanners": ["scanner-a", "scanner-b"], "target": ["target"],
    }


def test_addresses_are_unique_and_inside_the_test_range() -> None:
    """Lab addresses never leave 198.18.0.0/15 and never collide with each other or a gateway."""
    seen = {net.gateway for net in NETWORKS.values()}
    for h in HOSTS:
        for address in h.addresses.values():
            assert ipaddress.ip_address(address) in LAB_RANGE
            assert address not in seen
            seen.add(address)


def test_only_edge_joins_both_networks() -> None:
    """Edge is the one bridge between the external and the internal network."""
    assert [h.name for h in HOSTS if len(h.octets) == 2] == ["edge"]
    assert host_spec("db").networks == [NETWORKS["internal"]]
    assert host_spec("target").networks == [NETWORKS["external"]]


def test_host_side_interface_names_fit_linux_limits() -> None:
    """Host-side veth names are unique and at most 15 bytes (longer names make `ip link` fail)."""
    names = [h.host_side_interface(n) for h in HOSTS for n in h.octets]
    assert len(set(names)) == len(names)
    assert max(len(n) for n in names) <= 15


@pytest.mark.parametrize("name", [h.name for h in HOSTS])
def test_network_files_have_no_gateway(name: str) -> None:
    """A host's network files give static addresses only: no gateway, no DHCP, no router advertisements."""
    spec = host_spec(name)
    for net in spec.networks:
        text = network_file(net, spec.addresses[net.key])
        assert f"Name={net.interface}\n" in text
        assert f"Address={spec.addresses[net.key]}/24\n" in text
        assert "Gateway" not in text.replace("no Gateway=", "")
        assert "DHCP=no" in text and "IPv6AcceptRA=no" in text


def test_hosts_file_names_only_reachable_hosts() -> None:
    """/etc/hosts maps each lab host by its address on a shared network (internal preferred)."""
    scanner = hosts_file(host_spec("scanner-a"))
    assert "198.18.0.10\tedge\n" in scanner and "198.18.0.30\ttarget\n" in scanner
    assert "198.18.1." not in scanner
    edge = hosts_file(host_spec("edge"))
    assert "198.18.1.20\tdb\n" in edge and "198.18.0.21\tscanner-a\n" in edge
    assert "198.18.1.10\tedge" in hosts_file(host_spec("manager"))


def test_apt_proxy_is_on_the_hosts_own_gateway() -> None:
    """Each host uses the proxy on a gateway it can reach (internal first)."""
    assert "http://198.18.1.1:3143" in apt_proxy_conf(host_spec("edge"))
    assert "http://198.18.1.1:3143" in apt_proxy_conf(host_spec("db"))
    assert "http://198.18.0.1:3143" in apt_proxy_conf(host_spec("scanner-b"))


def test_unknown_host_is_named_in_the_error() -> None:
    with pytest.raises(KeyError, match="no lab host named 'nope'"):
        host_spec("nope")


def test_nft_table_rejects_everything_leaving_a_bridge() -> None:
    """The lab's nft table refuses forwarding in and out of each bridge and all input but the proxy."""
    rules = nft_ruleset()
    for net in NETWORKS.values():
        assert f'iifname "{net.bridge}" oifname != "{net.bridge}" reject' in rules
        assert f'oifname "{net.bridge}" iifname != "{net.bridge}" reject' in rules
    assert 'iifname { "mipo-ext", "mipo-int" } tcp dport 3143 accept' in rules
    assert rules.rstrip().endswith('iifname { "mipo-ext", "mipo-int" } reject with icmpx type admin-prohibited\n  }\n}')


def test_apt_proxy_binds_only_to_the_lab_gateways(tmp_path: Path) -> None:
    """apt-cacher-ng listens on the bridge gateways only, never on this machine's other addresses."""
    conf = acng_conf(["198.18.0.1", "198.18.1.1"], tmp_path)
    assert "BindAddress: 198.18.0.1 198.18.1.1\n" in conf
    assert "Port: 3143\n" in conf


def test_nspawn_gives_each_network_its_own_veth(tmp_path: Path) -> None:
    """Edge gets a link on each bridge; nspawn never registers with a (missing) system bus."""
    argv = nspawn_argv(host_spec("edge"), HostDirs.of(tmp_path, "edge"))
    assert "--register=no" in argv and "--keep-unit" in argv and "--boot" in argv
    assert "--network-veth-extra=mx-edge:ext0" in argv
    assert "--network-veth-extra=mi-edge:int0" in argv
    assert not any(a.startswith("--network-bridge") for a in argv)
