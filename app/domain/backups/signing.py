"""Ed25519 signatures over manifests, with the key the backup service holds as a credential."""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.config import Settings
from app.errors import Invalid, Unavailable


def load_signing_key(settings: Settings) -> Ed25519PrivateKey:
    """The manifest signing key; a backup service without one refuses to back up or restore."""
    name = settings.backup.signing_key_credential
    if not name:
        raise Unavailable("backup.signing_key_credential is not set", reason="signing_key_missing")
    try:
        pem = settings.credential(name).encode()
        key = serialization.load_pem_private_key(pem, password=None)
    except Exception as exc:  # ConfigError, or a file that is not a PEM key
        raise Unavailable(f"manifest signing key {name!r} unusable: {exc}", reason="signing_key_missing") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise Unavailable(f"manifest signing key {name!r} is not an Ed25519 key", reason="signing_key_missing")
    return key


def generate_signing_key_pem() -> bytes:
    """A new Ed25519 key as PKCS#8 PEM (what provisioning writes to the credential file)."""
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def sign(key: Ed25519PrivateKey, data: bytes) -> bytes:
    return key.sign(data)


def verify(key: Ed25519PrivateKey, data: bytes, signature: bytes) -> None:
    """Raise Invalid(reason=signature_invalid) unless `signature` is this key's over `data`."""
    try:
        key.public_key().verify(signature, data)
    except InvalidSignature:
        raise Invalid("the manifest signature does not verify with this backup service's key",
                      reason="signature_invalid") from None
