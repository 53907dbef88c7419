"""Addresses in result batches: parsed to (version, integer, canonical text), anything else refused."""

from __future__ import annotations

import ipaddress

import pytest

from app.domain.ingest.service import _parse_ip


@pytest.mark.parametrize("text", ["198.18.0.30", "0.0.0.0", "255.255.255.255", "2001:db8::1", "::ffff:198.18.0.1",
                                  "2001:DB8:0:0:0:0:0:1", "::1"])
def test_valid_addresses_match_ipaddress(text: str) -> None:
    ip = ipaddress.ip_address(text)
    assert _parse_ip(text) == (ip.version, int(ip), str(ip))


@pytest.mark.parametrize("text", ["", "1.2.3", "1.2.3.4.5", "01.2.3.4", "1.2.3.256", " 1.2.3.4", "1.2.3.4\x00",
                                  "fe80::1%eth0", "example.org", "1.2.3.4/32", "::g"])
def test_anything_else_is_refused(text: str) -> None:
    assert _parse_ip(text) is None
