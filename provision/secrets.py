"""Controller-side secrets made once and kept root-only: the appliance CA, host certificates, passwords."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import ipaddress
import os
import secrets
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_NAME = "mipo appliance CA"
CA_DAYS = 3650
CERT_DAYS = 825


def _private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)
    return path


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    tmp.replace(path)  # never a half-written key


def secret(state_dir: Path, name: str, nbytes: int = 32) -> str:
    """A random secret created on first use and returned unchanged afterwards (URL-safe text)."""
    path = _private_dir(state_dir / "secrets") / name
    if not path.exists():
        _write_private(path, (secrets.token_urlsafe(nbytes) + "\n").encode())
    return path.read_text().strip()


def signing_key(state_dir: Path) -> bytes:
    """The Ed25519 key (PKCS#8 PEM) the backup service signs manifests with, created once."""
    path = _private_dir(state_dir / "secrets") / "backup-signing-key"
    if not path.exists():
        key = ed25519.Ed25519PrivateKey.generate()
        _write_private(path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    return path.read_bytes()


def scram_verifier(password: str, salt_key: str, iterations: int = 4096) -> str:
    """PostgreSQL's SCRAM-SHA-256 verifier; the salt is derived from salt_key so reruns give the same text."""
    salt = hmac.new(salt_key.encode(), b"mipo-scram-salt", hashlib.sha256).digest()[:16]
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    b64 = base64.b64encode
    return f"SCRAM-SHA-256${iterations}:{b64(salt).decode()}${b64(stored_key).decode()}:{b64(server_key).decode()}"


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return key
    key = ec.generate_private_key(ec.SECP256R1())
    _write_private(path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return key


def key_pem(path: Path) -> bytes:
    return path.read_bytes()


def ensure_ca(state_dir: Path) -> tuple[Path, Path]:
    """(certificate, key) of the appliance CA, generated on the first deploy only."""
    pki = _private_dir(state_dir / "pki")
    cert_path, key_path = pki / "ca.crt", pki / "ca.key"
    key = _load_key(key_path)
    if not cert_path.exists():
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_NAME)])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        cert_path.chmod(0o644)
    return cert_path, key_path


def _sans_of(cert: x509.Certificate) -> tuple[set[str], set[str]]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set(), set()
    return set(san.get_values_for_type(x509.DNSName)), {str(a) for a in san.get_values_for_type(x509.IPAddress)}


def ensure_host_cert(state_dir: Path, label: str, dns_names: list[str], addresses: list[str]) -> tuple[Path, Path]:
    """(certificate, key) for one TLS server, reissued only when its names change or it nears expiry."""
    ca_cert_path, ca_key_path = ensure_ca(state_dir)
    pki = _private_dir(state_dir / "pki")
    cert_path, key_path = pki / f"{label}.crt", pki / f"{label}.key"
    key = _load_key(key_path)
    now = dt.datetime.now(dt.UTC)
    if cert_path.exists():
        current = x509.load_pem_x509_certificate(cert_path.read_bytes())
        fresh = current.not_valid_after_utc - now > dt.timedelta(days=30)
        if fresh and _sans_of(current) == (set(dns_names), set(addresses)):
            return cert_path, key_path
    ca_key = _load_key(ca_key_path)
    ca_cert = x509.load_pem_x509_certificate(ca_cert_path.read_bytes())
    san = [x509.DNSName(n) for n in dns_names] + [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_names[0] if dns_names else label)]))
        .issuer_name(ca_cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=CERT_DAYS))
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + ca_cert_path.read_bytes())
    cert_path.chmod(0o644)
    return cert_path, key_path
