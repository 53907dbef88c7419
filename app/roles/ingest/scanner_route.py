"""Scanner authentication for the scanner API, and `scanner_post`: its hot routes as bare ASGI handlers.

Heartbeats (10,000 scanners → ~170/s) and claims are small JSON calls where Litestar's per-request
machinery — signature model, dependency resolution, response conversion — cost more CPU than the work
itself. `scanner_post` serves them as plain ASGI handlers with the same contract as the other routes:
POST only, key checked first, body decoded by `decode_body` (422 `malformed` naming the field), a msgspec
Struct answered as JSON, and every domain error raised to the app's exception handlers (problem documents).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar, cast

import msgspec
from litestar import Request, asgi
from litestar.exceptions import ClientException, MethodNotAllowedException
from litestar.handlers import ASGIRouteHandler
from litestar.types import HTTPResponseBodyEvent, HTTPResponseStartEvent, HTTPScope, Receive, Scope, Send

from app.domain.ingest.decoding import decode_body
from app.domain.scanners import service as scanners
from app.domain.scanners.schemas import AuthenticatedScanner
from app.roles.ingest.runtime import IngestRuntime, Runtime, client_address
from app.scanner.client import KEY_HEADER

T = TypeVar("T")
Handler = Callable[[T, AuthenticatedScanner, Request, IngestRuntime], Awaitable[msgspec.Struct]]
_JSON = [(b"content-type", b"application/json")]
MAX_BODY_BYTES = 64 * 1024  # a heartbeat or a claim is well under 1 KiB
_encoder = msgspec.json.Encoder()
_KEY_HEADER = KEY_HEADER.lower().encode("latin-1")


async def authenticated_scanner(request: Request, ingest_runtime: Runtime) -> AuthenticatedScanner:
    """Checked on every call: key hash, revocation, disabled, bound network (from the key cache, which a change
    in the database invalidates at once, and which is never trusted longer than `auth_cache_seconds`)."""
    rt = ingest_runtime
    return await scanners.authenticate(rt.auth, rt.pools.get("config"), _presented_key(request.scope),
                                       client_address(request, rt.settings))


def _presented_key(scope: Scope) -> str | None:
    # Straight from the ASGI headers: building Litestar's Headers multidict costs more than the lookup.
    for name, value in scope["headers"]:
        if name == _KEY_HEADER:
            return bytes(value).decode("latin-1")
    return None


async def _body(receive: Receive) -> bytes:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientException("the client went away", status_code=400)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ClientException(f"body larger than {MAX_BODY_BYTES} bytes", status_code=413)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def scanner_post(path: str, body_type: type[T], what: str) -> Callable[[Handler[T]], ASGIRouteHandler]:
    """`POST path` for an authenticated scanner: `handler(data, scanner, request, runtime)` returns the answer."""

    def wrap(handler: Handler[T]) -> ASGIRouteHandler:
        async def serve(scope: Scope, receive: Receive, send: Send) -> None:
            if cast("HTTPScope", scope)["method"] != "POST":
                raise MethodNotAllowedException(headers={"Allow": "POST"})
            request: Request = Request(scope, receive)
            runtime: IngestRuntime = scope["litestar_app"].state.ingest_runtime
            scanner = await authenticated_scanner(request, runtime)
            data = decode_body(await _body(receive), body_type, what)
            body = _encoder.encode(await handler(data, scanner, request, runtime))
            start: HTTPResponseStartEvent = {"type": "http.response.start", "status": 200,
                                             "headers": [*_JSON, (b"content-length", str(len(body)).encode())]}
            end: HTTPResponseBodyEvent = {"type": "http.response.body", "body": body, "more_body": False}
            await send(start)
            await send(end)

        serve.__name__ = serve.__qualname__ = handler.__name__
        serve.__doc__ = handler.__doc__
        return asgi(path, name=handler.__name__, copy_scope=False)(serve)

    return wrap
