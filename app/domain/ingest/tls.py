"""Certificate fields from the DER the agent captured: subject, issuer, SANs, not-after, SHA-256."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509


@dataclass(frozen=True, slots=True)
class CertificateFields:
    subject: str | None
    issuer: str | None
    sans: list[str] | None
    not_after: datetime | None
    sha256: str


def parse_certificate(der: bytes) -> CertificateFields:
    """Never raises on a bad certificate: the fingerprint alone is still evidence."""
    fingerprint = hashlib.sha256(der).hexdigest()
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return CertificateFields(None, None, None, None, fingerprint)
    sans: list[str] | None = None
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        sans = [*ext.get_values_for_type(x509.DNSName), *(str(ip) for ip in ext.get_values_for_type(x509.IPAddress))]
    except (x509.ExtensionNotFound, ValueError):
        sans = None
    subject: str | None
    issuer: str | None
    try:
        subject, issuer = cert.subject.rfc4514_string(), cert.issuer.rfc4514_string()
    except ValueError:
        subject = issuer = None
    return CertificateFields(subject, issuer, sans, cert.not_valid_after_utc, fingerprint)
