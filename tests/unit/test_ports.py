"""Port specs: ranges, /tcp, the built-in catalog, compact formatting, clear refusals."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.domain.ports.catalog import NAMED, TOP_100, top_n
from app.domain.ports.spec import PortSpecError, format_ports, normalise_spec, parse_ports


def _ports(spec: str) -> set[int]:
    return {p for lo, hi in parse_ports(spec).intervals for p in range(lo, hi + 1)}


def test_list_and_ranges_with_tcp_suffix() -> None:
    assert _ports("22,80/tcp,443,8000-8002") == {22, 80, 443, 8000, 8001, 8002}


def test_compact_format_merges_consecutive_ports() -> None:
    assert normalise_spec("8080,1-1024,1000-1030,8081") == "1-1030,8080-8081"


def test_catalog_sizes() -> None:
    assert len(set(TOP_100)) == 100
    assert len(set(top_n(1000))) == 1000
    assert set(TOP_100) <= set(top_n(1000))
    assert parse_ports("top-1000").count() == 1000


def test_named_services() -> None:
    assert _ports("ssh,https") == {22, *NAMED["https"]}


@pytest.mark.parametrize(("spec", "needle"), [
    ("", "empty"), ("22,,80", "empty item"), ("0", "1-65535"), ("65536", "1-65535"), ("90-80", "above"),
    ("53/udp", "TCP"), ("top-5", "top-100"), ("http-alt", "not a port"), ("1-", "not a port"),
])
def test_bad_specs_name_the_item(spec: str, needle: str) -> None:
    with pytest.raises(PortSpecError, match=needle):
        parse_ports(spec)


@given(st.sets(st.integers(1, 65535), min_size=1, max_size=200))
def test_format_then_parse_round_trips(ports: set[int]) -> None:
    assert _ports(format_ports(ports)) == ports


@pytest.mark.parametrize("spec", ["22," + "9" * 5000, "x" * 9000, "top-" + "1" * 3000, "9" * 300 + "/udp"])
def test_over_long_item_is_echoed_cut_short(spec: str) -> None:
    """The refusal quotes at most the item's first 40 characters and an ellipsis, never the whole input."""
    with pytest.raises(PortSpecError) as refused:
        parse_ports(spec)
    message = str(refused.value)
    assert "…" in message and len(message) < 160, message
    bad = spec.split(",")[-1]
    assert repr(bad[:40] + "…") in message


def test_short_item_is_echoed_whole() -> None:
    with pytest.raises(PortSpecError, match=r"^'http-alt' is not a port"):
        parse_ports("22,http-alt")
