"""Agent building blocks without any network: port specs, target ranges, the scope rule, the spool,
key formats, certificate parsing and the reproducible zipapp."""

from __future__ import annotations

import datetime as dt
import hashlib
import zipfile
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from app.domain.ingest.tls import parse_certificate
from app.domain.scanners import keys
from app.scanner.build import build_zipapp
from app.scanner.ports import (
    contains,
    count_ports,
    iter_addresses,
    iter_ports,
    outside_scope,
    parse_ports,
    parse_targets,
)
from app.scanner.spool import Spool


def test_port_spec_is_merged_and_sorted() -> None:
    assert parse_ports("8080, 22,20-25,26,1-3") == [(1, 3), (20, 26), (8080, 8080)]
    assert count_ports(parse_ports("1-1024,8080")) == 1025


@pytest.mark.parametrize("spec", ["", "x", "10-5", "70000", "1-", "-3", "22,,a"])
def test_bad_port_spec_is_refused(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_ports(spec)


@given(st.sets(st.integers(0, 65535), min_size=1, max_size=50))
def test_port_spec_round_trip(ports: set[int]) -> None:
    intervals = parse_ports(",".join(map(str, ports)))
    assert set(iter_ports(intervals)) == ports
    assert all(contains(intervals, p) for p in ports)
    assert not any(contains(intervals, p) for p in set(range(0, 65536, 997)) - ports)


def test_target_ranges_expand_and_refuse_reversed() -> None:
    ranges = parse_targets([["198.18.0.254", "198.18.1.1"]])
    assert list(iter_addresses(ranges)) == ["198.18.0.254", "198.18.0.255", "198.18.1.0", "198.18.1.1"]
    with pytest.raises(ValueError):
        parse_targets([["198.18.0.9", "198.18.0.1"]])
    with pytest.raises(ValueError):
        parse_targets([["198.18.0.1", "::1"]])


def test_scope_needs_every_range_wholly_inside_one_network() -> None:
    scope = ["127.0.0.0/8", "198.18.0.0/24"]
    assert outside_scope(parse_targets([["198.18.0.1", "198.18.0.255"], ["127.1.2.3", "127.1.2.3"]]), scope) == []
    assert outside_scope(parse_targets([["198.18.0.250", "198.18.1.5"]]), scope) == ["198.18.0.250-198.18.1.5"]
    assert outside_scope(parse_targets([["8.8.8.8", "8.8.8.8"]]), scope) == ["8.8.8.8-8.8.8.8"]
    assert outside_scope(parse_targets([["::1", "::1"]]), scope) == ["::1-::1"]
    assert outside_scope(parse_targets([["127.0.0.1", "127.0.0.1"]]), []) == ["127.0.0.1-127.0.0.1"]


def test_spool_orders_batches_before_completion_and_survives_reopen(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.put(Spool.complete_name(7, 2), b"c")
    for seq in (10, 2, 1):
        spool.put(Spool.batch_name(7, 2, seq), b"b")
    spool.put(Spool.batch_name(3, 1, 0), b"x")
    (tmp_path / "half-written.tmp").write_bytes(b"partial")
    again = Spool(tmp_path)
    names = [p.name for p in again.pending()]
    assert names == [Spool.batch_name(3, 1, 0), Spool.batch_name(7, 2, 1), Spool.batch_name(7, 2, 2),
                     Spool.batch_name(7, 2, 10), Spool.complete_name(7, 2)]
    assert not list(tmp_path.glob("*.tmp"))
    again.reject(again.pending()[0])
    assert (tmp_path / "rejected" / Spool.batch_name(3, 1, 0)).exists()


def test_keys_are_prefixed_random_and_checked_in_constant_time() -> None:
    key_id, key = keys.new_key()
    assert key.startswith(f"mipo_{key_id}_") and keys.split_key(key) == key_id
    assert len(key.split("_", 2)[2]) >= 43  # 32 random bytes, url-safe base64 (which may contain "_")
    assert keys.key_matches(key, hashlib.sha256(key.encode()).digest())
    assert not keys.key_matches(key + "x", hashlib.sha256(key.encode()).digest())
    assert keys.split_key("mipo_short_x") is None and keys.split_key("bearer abc") is None
    assert keys.new_key() != keys.new_key() and keys.new_token() != keys.new_token()


def test_certificate_fields_and_garbage() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "a.example")])
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Lab CA")])
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=90))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("a.example"),
                                                        x509.IPAddress(__import__("ipaddress").ip_address(
                                                            "198.18.0.5"))]), critical=False)
            .sign(key, hashes.SHA256()))
    der = cert.public_bytes(serialization.Encoding.DER)
    fields = parse_certificate(der)
    assert (fields.subject, fields.issuer) == ("CN=a.example", "CN=Lab CA")
    assert fields.sans == ["a.example", "198.18.0.5"]
    assert fields.not_after == now + dt.timedelta(days=90)
    assert fields.sha256 == hashlib.sha256(der).hexdigest()
    broken = parse_certificate(b"not a certificate")
    assert broken.subject is None and broken.sha256 == hashlib.sha256(b"not a certificate").hexdigest()


def test_zipapp_is_reproducible_and_stdlib_only() -> None:
    """Both ingest nodes must serve the same bytes (one SHA-256 in install.sh); the agent imports no third party."""
    blob = build_zipapp()
    assert blob == build_zipapp()
    assert blob.startswith(b"#!/usr/bin/env python3\n")
    import io
    import sys
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        names = zf.namelist()
        assert "__main__.py" in names and "mipo_scanner/engine.py" in names
        for name in names:
            source = zf.read(name).decode()
            for line in source.splitlines():
                if line.startswith(("import ", "from ")) and not line.startswith(("from .", "from __future__")):
                    module = line.split()[1].split(".")[0]
                    assert module in sys.stdlib_module_names or module == "mipo_scanner", (name, line)


def test_host_identity_mixes_in_the_host_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Cloned images share /etc/machine-id: two hosts with different names must not become one scanner."""
    import socket

    from app.scanner.settings import host_id

    machine_id = tmp_path / "machine-id"
    machine_id.write_text("9d91c9365f144bceaab4f8d274211c48\n")
    monkeypatch.setattr(socket, "gethostname", lambda: "scanner-a")
    a, a_again = host_id(str(machine_id)), host_id(str(machine_id))
    monkeypatch.setattr(socket, "gethostname", lambda: "scanner-b")
    b = host_id(str(machine_id))
    assert a == a_again != b
    assert len(a) == 64 and "9d91c936" not in a
