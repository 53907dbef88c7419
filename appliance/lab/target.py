"""The lab's `target` services (what a scanner should find): self-signed HTTPS on 443, HTTP on 8080.

Each is a systemd unit in the host's own layer that tests may stop and start; the appliance deploy never
touches `target`."""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from appliance.lab.topology import TARGET_HTTP_PORT, TARGET_HTTP_UNIT, TARGET_HTTPS_PORT, TARGET_HTTPS_UNIT

CERT = "etc/mipo-lab/target.crt"
KEY = "etc/mipo-lab/target.key"
DOCROOT = "srv/lab-target"
HTTPS_SCRIPT = "usr/local/lib/mipo-lab/target_https.py"

_HTTPS_SERVER = f'''"""HTTPS on :{TARGET_HTTPS_PORT} with a self-signed certificate (installed by the mipo lab)."""
import functools
import http.server
import ssl

context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain("/{CERT}", "/{KEY}")
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory="/{DOCROOT}")
server = http.server.ThreadingHTTPServer(("0.0.0.0", {TARGET_HTTPS_PORT}), handler)
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
'''


def _unit(description: str, exec_start: str) -> str:
    return (
        f"[Unit]\nDescription={description} (mipo lab target)\nAfter=network-online.target\n\n"
        f"[Service]\nExecStart={exec_start}\nRestart=on-failure\n\n"
        "[Install]\nWantedBy=multi-user.target\n"
    )


def self_signed_certificate(common_name: str, address: str) -> tuple[bytes, bytes]:
    """(certificate PEM, private key PEM), self-signed, valid ten years, naming the host and its address."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(common_name),
                                                    x509.IPAddress(ipaddress.ip_address(address))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def install_target_services(root: Path, address: str) -> None:
    """Write the target's certificate (once), server script and enabled units into its root."""
    cert, key = root / CERT, root / KEY
    if not (cert.exists() and key.exists()):
        cert.parent.mkdir(parents=True, exist_ok=True)
        cert_pem, key_pem = self_signed_certificate("target", address)
        key.touch(mode=0o600)
        key.write_bytes(key_pem)
        cert.write_bytes(cert_pem)
    docroot = root / DOCROOT
    docroot.mkdir(parents=True, exist_ok=True)
    (docroot / "index.html").write_text("mipo lab target\n")
    script = root / HTTPS_SCRIPT
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(_HTTPS_SERVER)
    units = {
        TARGET_HTTPS_UNIT: _unit(f"HTTPS on {TARGET_HTTPS_PORT}", f"/usr/bin/python3 /{HTTPS_SCRIPT}"),
        TARGET_HTTP_UNIT: _unit(
            f"HTTP on {TARGET_HTTP_PORT}",
            f"/usr/bin/python3 -m http.server {TARGET_HTTP_PORT} --bind 0.0.0.0 --directory /{DOCROOT}",
        ),
    }
    wants = root / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    for name, text in units.items():
        (root / "etc/systemd/system" / name).write_text(text)
        link = wants / name
        if not link.is_symlink():
            link.symlink_to(f"/etc/systemd/system/{name}")
