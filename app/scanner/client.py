"""Blocking JSON-over-HTTPS client for the ingest scanner API (one keep-alive connection per instance)."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import ssl
import urllib.parse
from typing import Any

KEY_HEADER = "X-Mipo-Key"


class TransportError(Exception):
    """Ingest unreachable, connection cut, or a 5xx: retry later."""


class ApiRefused(Exception):
    """Ingest answered with a 4xx problem document: `reason` says why; retrying the same call will not help."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status = status
        self.body = body
        self.reason = str(body.get("reason", "http_error"))
        super().__init__(f"{status} {self.reason}: {body.get('detail', '')}")


class Client:
    def __init__(self, base_url: str, ca_file: str = "", key: str = "", timeout: float = 30.0) -> None:
        url = urllib.parse.urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"server_url: expected https://HOST[:PORT], got {base_url!r}")
        self.https = url.scheme == "https"
        self.host = url.hostname
        self.port = url.port or (443 if self.https else 80)
        self.prefix = url.path.rstrip("/")
        self.key = key
        self.timeout = timeout
        self.context: ssl.SSLContext | None = None
        if self.https:
            # Verified against the appliance CA only (pinned at install), never the system store.
            self.context = ssl.create_default_context(cafile=ca_file or None)
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        if self._conn is None:
            if self.https:
                self._conn = http.client.HTTPSConnection(self.host, self.port, timeout=timeout, context=self.context)
            else:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        elif self._conn.sock is not None:
            self._conn.sock.settimeout(timeout)
        self._conn.timeout = timeout
        return self._conn

    def abort(self) -> None:
        """Cut the connection from another thread: a call blocked on it (a claim's long poll, an upload) returns
        at once with a TransportError, and ingest sees the disconnect."""
        conn = self._conn
        sock = getattr(conn, "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def call(self, method: str, path: str, body: object = None, *, raw: bytes | None = None,
             timeout: float | None = None) -> dict[str, Any]:
        """Send one request; return the decoded JSON answer, raise ApiRefused (4xx) or TransportError."""
        payload = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.key:
            headers[KEY_HEADER] = self.key
        try:
            conn = self._connection(timeout or self.timeout)
            conn.request(method, self.prefix + path, body=payload, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException, ssl.SSLError) as exc:
            self.close()
            raise TransportError(f"{method} {path}: {exc!r}") from None
        if resp.will_close:
            self.close()
        try:
            decoded = json.loads(data) if data else {}
        except ValueError:
            decoded = {"reason": "http_error", "detail": data[:200].decode("latin-1")}
        if resp.status >= 500 or resp.status == 429:
            raise TransportError(f"{method} {path}: {resp.status} {decoded.get('reason', '')}")
        if resp.status >= 400:
            raise ApiRefused(resp.status, decoded if isinstance(decoded, dict) else {})
        return decoded if isinstance(decoded, dict) else {"data": decoded}
