"""What listens on an open port: a short banner read, a TLS certificate (DER), or an HTTP status line."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
from dataclasses import dataclass

# Ports where a client speaks first with a TLS ClientHello: go straight to the handshake.
TLS_PORTS = frozenset({443, 465, 563, 636, 853, 989, 990, 992, 993, 994, 995, 5061, 6697, 8443, 9443})
BANNER_BYTES = 512
_LINGER_ABORT = struct.pack("ii", 1, 0)


@dataclass(slots=True)
class ServiceInfo:
    banner: str | None = None
    service: str | None = None
    tls_der: bytes | None = None


def _capture_context() -> ssl.SSLContext:
    # Capture only: the certificate is evidence to record, not a peer we trust, so nothing is verified.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def clean_banner(data: bytes) -> str | None:
    text = data.decode("utf-8", "replace").replace("\x00", "")
    text = "".join(ch if ch.isprintable() or ch in "\r\n\t" else "." for ch in text).strip()
    return text[:256] or None


def guess_service(banner: str | None, tls: bool) -> str | None:
    if banner:
        head = banner[:16].upper()
        for prefix, name in (("SSH-", "ssh"), ("HTTP/", "http"), ("220", "smtp/ftp"), ("+OK", "pop3"),
                             ("* OK", "imap"), ("RFB ", "vnc")):
            if head.startswith(prefix):
                return ("https" if tls and name == "http" else name)
    return "tls" if tls else None


async def _open(ip: str, port: int, timeout: float, tls: ssl.SSLContext | None = None
                ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.wait_for(
        asyncio.open_connection(ip, port, ssl=tls, server_hostname="" if tls else None), timeout)


def _abort(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    with contextlib.suppress(OSError, AttributeError):
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ABORT)
    writer.transport.abort()


async def read_banner(ip: str, port: int, timeout: float, wait: float) -> bytes | None:
    """Connect and read what the service says first (SSH, SMTP…); None when it stays silent."""
    try:
        reader, writer = await _open(ip, port, timeout)
    except (OSError, TimeoutError):
        return None
    try:
        return await asyncio.wait_for(reader.read(BANNER_BYTES), wait) or None
    except (OSError, TimeoutError):
        return None
    finally:
        _abort(writer)


async def tls_certificate(ip: str, port: int, timeout: float) -> bytes | None:
    """Handshake and return the peer certificate as DER; None when the port does not speak TLS."""
    try:
        _reader, writer = await _open(ip, port, timeout, _capture_context())
    except (OSError, TimeoutError, ssl.SSLError):
        return None
    try:
        obj = writer.get_extra_info("ssl_object")
        return obj.getpeercert(binary_form=True) if obj is not None else None
    finally:
        _abort(writer)


async def http_status(ip: str, port: int, timeout: float, tls: bool) -> bytes | None:
    """A silent port may be HTTP: one HEAD request, keep the status line and Server header."""
    try:
        reader, writer = await _open(ip, port, timeout, _capture_context() if tls else None)
    except (OSError, TimeoutError, ssl.SSLError):
        return None
    try:
        writer.write(f"HEAD / HTTP/1.0\r\nHost: {ip}\r\nUser-Agent: mipo-scanner\r\n\r\n".encode())
        data = await asyncio.wait_for(reader.read(BANNER_BYTES), timeout)
    except (OSError, TimeoutError, ssl.SSLError):
        return None
    finally:
        _abort(writer)
    if not data.startswith(b"HTTP/"):
        return data or None
    lines = data.split(b"\r\n")
    keep = [lines[0]] + [ln for ln in lines[1:] if ln.lower().startswith(b"server:")]
    return b"\r\n".join(keep)


async def identify(ip: str, port: int, timeout: float, banner: bool, tls: bool) -> ServiceInfo:
    """Banner first (unless the port is a TLS port); silent ports get a TLS attempt, then an HTTP probe."""
    info = ServiceInfo()
    data: bytes | None = None
    if banner and port not in TLS_PORTS:
        data = await read_banner(ip, port, timeout, wait=min(timeout, 1.0))
    if data is None and tls:
        info.tls_der = await tls_certificate(ip, port, timeout)
    if data is None and banner:
        data = await http_status(ip, port, timeout, tls=info.tls_der is not None)
    info.banner = clean_banner(data) if data else None
    info.service = guess_service(info.banner, info.tls_der is not None)
    return info
