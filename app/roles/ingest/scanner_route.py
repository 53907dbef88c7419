"""Scanner authentication for the scanner API, and its hot calls (heartbeat, claim) served in front of Litestar.

Heartbeats (10,000 scanners → ~170/s) and claims are small JSON calls where Litestar's per-request machinery
— routing, middleware, Request and scope state, exception middleware — costs more CPU than the work itself.
On a machine serving a request every few milliseconds that code is also cold in the CPU caches, so each
request pays for every line it touches. `ScannerFront` (what `serve ingest` runs) therefore answers an exact
`POST` to a hot path itself and hands everything else — other paths, other methods, the lifespan — to the
Litestar app, which also routes the same calls (`scanner_post`'s Litestar route) for any request the front
does not take. The contract is the one of the other routes: key checked first, body decoded by `decode_body`
(422 `malformed` naming the field), a msgspec Struct answered as JSON, and every error turned into a problem
document by the app's own exception handlers (`app.web.problems`).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

import msgspec
from litestar import Litestar, Request, asgi
from litestar.exceptions import ClientException, HTTPException, MethodNotAllowedException
from litestar.handlers import ASGIRouteHandler
from litestar.types import HTTPResponseStartEvent, HTTPScope, Receive, Scope, Send

from app.domain.ingest.decoding import decode_body
from app.domain.scanners import service as scanners
from app.domain.scanners.schemas import AuthenticatedScanner
from app.roles.ingest.runtime import FORWARDED_FOR, IngestRuntime, Runtime, client_address
from app.scanner.client import KEY_HEADER

T = TypeVar("T")
MAX_BODY_BYTES = 64 * 1024  # a heartbeat or a claim is well under 1 KiB
_encoder = msgspec.json.Encoder()
_KEY_HEADER = KEY_HEADER.lower().encode("latin-1")
_CONTENT_TYPE = (b"content-type", b"application/json")


@dataclass(slots=True)
class Call:
    """One hot call as its handler sees it: the ASGI scope and receive, the presented key, the client address."""

    scope: Scope
    receive: Receive
    key: str | None
    address: str

    async def authenticate(self, runtime: IngestRuntime) -> AuthenticatedScanner:
        """The caller, as `scanners.authenticate` answers (a long poll asks again before every claim)."""
        if self.key is not None and (scanner := runtime.auth.accepted(self.key, self.address)) is not None:
            return scanner
        return await self.authenticate_in_full(runtime)

    async def authenticate_in_full(self, runtime: IngestRuntime) -> AuthenticatedScanner:
        """`scanners.authenticate`; its answer is remembered by the key cache (`accepted`) for the next call with
        the same key from the same address, as long as nothing it depends on changes."""
        auth = runtime.auth
        hits = auth.hits
        scanner = await scanners.authenticate(auth, runtime.pools.get("config"), self.key, self.address)
        auth.accept(hits, self.key or "", scanner)
        return scanner


# A handler answers `(data, scanner, call, runtime)`: a coroutine function, or (heartbeat) a plain one.
Handler = Callable[[T, AuthenticatedScanner, Call, IngestRuntime], Awaitable[msgspec.Struct] | msgspec.Struct]


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


async def _rest_of_body(receive: Receive, first: bytes) -> bytes:
    """The body of a request whose first message said `more_body` (an agent sends its small body at once)."""
    chunks, size = [first], len(first)
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


class ScannerPost(Generic[T]):
    """`POST path` for an authenticated scanner: `handler(data, scanner, call, runtime)` returns the answer."""

    def __init__(self, path: str, body_type: type[T], what: str, handler: Handler[T]) -> None:
        self.path, self.body_type, self.what, self.handler = path, body_type, what, handler
        self.is_async = inspect.iscoroutinefunction(handler)
        self.decoder = msgspec.json.Decoder(body_type)
        self.route = self._litestar_route()

    async def answer(self, scope: Scope, receive: Receive, runtime: IngestRuntime) -> bytes:
        """The JSON answer to one call; refusals are raised (domain errors, HTTP exceptions).

        Written flat, as one function: it runs for every heartbeat, and each call or coroutine less is CPU saved."""
        key: str | None = None
        forwarded: str | None = None
        for name, value in scope["headers"]:  # the first of each, as Litestar's `headers.get`
            if name == _KEY_HEADER:
                if key is None:
                    key = bytes(value).decode("latin-1")
            elif name == FORWARDED_FOR and forwarded is None:
                forwarded = bytes(value).decode("latin-1")
        client = scope.get("client")
        address = runtime.address_of(client[0] if client else "", forwarded or "")
        call = Call(scope, receive, key, address)
        # The key first: nothing is read for an unknown caller.
        scanner = runtime.auth.accepted(key, address) if key is not None else None
        if scanner is None:
            scanner = await call.authenticate_in_full(runtime)

        message = await receive()
        if message["type"] != "http.request":
            raise ClientException("the client went away", status_code=400)
        body: bytes = message.get("body", b"")
        if len(body) > MAX_BODY_BYTES:
            raise ClientException(f"body larger than {MAX_BODY_BYTES} bytes", status_code=413)
        if message.get("more_body", False):
            body = await _rest_of_body(receive, body)
        try:
            data = self.decoder.decode(body)
        except msgspec.DecodeError:
            data = decode_body(body, self.body_type, self.what)  # raises the 422 `malformed` naming the field

        answer = self.handler(data, scanner, call, runtime)
        if self.is_async:
            answer = await cast("Awaitable[msgspec.Struct]", answer)
        return _encoder.encode(answer)

    def _litestar_route(self) -> ASGIRouteHandler:
        """The same call as a Litestar route: what create_app lists, and what serves requests the front passes on
        (another method → 405, a path Litestar normalises onto this one); errors go to the app's handlers."""

        async def serve(scope: Scope, receive: Receive, send: Send) -> None:
            if cast("HTTPScope", scope)["method"] != "POST":
                raise MethodNotAllowedException(headers={"Allow": "POST"})
            body = await self.answer(scope, receive, scope["litestar_app"].state.ingest_runtime)
            await send(_start(body))
            await send({"type": "http.response.body", "body": body, "more_body": False})

        serve.__name__ = serve.__qualname__ = self.handler.__name__
        serve.__doc__ = self.handler.__doc__
        return asgi(self.path, name=self.handler.__name__, copy_scope=False)(serve)


def scanner_post(path: str, body_type: type[T], what: str) -> Callable[[Handler[T]], ScannerPost[T]]:
    def wrap(handler: Handler[T]) -> ScannerPost[T]:
        return ScannerPost(path, body_type, what, handler)

    return wrap


def _start(body: bytes) -> HTTPResponseStartEvent:
    return {"type": "http.response.start", "status": 200,
            "headers": [_CONTENT_TYPE, (b"content-length", b"%d" % len(body))]}


class ScannerFront:
    """The ASGI app `serve ingest` runs: exact `POST`s to the hot paths answered here, all else by `app`."""

    def __init__(self, app: Litestar, runtime: IngestRuntime, posts: Iterable[ScannerPost[Any]]) -> None:
        self.app, self.runtime = app, runtime
        self.posts: dict[str, ScannerPost[Any]] = {post.path: post for post in posts}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and cast("HTTPScope", scope)["method"] == "POST":
            post = self.posts.get(scope["path"])
            if post is not None:
                try:
                    body = await post.answer(scope, receive, self.runtime)
                except Exception as exc:  # every refusal becomes its problem document
                    await self._problem(scope, receive, send, exc)
                    return
                await send(_start(body))
                await send({"type": "http.response.body", "body": body, "more_body": False})
                return
        await self.app(scope, receive, send)

    async def _problem(self, scope: Scope, receive: Receive, send: Send, exc: Exception) -> None:
        """The answer Litestar's exception middleware would give: the app's handler for `exc`, rendered by Litestar
        (status-code handlers first for HTTP exceptions, then the exception's classes in MRO order)."""
        scope["app"] = scope["litestar_app"] = self.app  # as Litestar sets them, for the Request its handlers take
        handlers: dict[Any, Any] = dict(self.app.exception_handlers)
        handler = handlers.get(exc.status_code) if isinstance(exc, HTTPException) else None
        if handler is None:
            handler = next((h for cls in type(exc).__mro__ if (h := handlers.get(cls)) is not None), None)
        if handler is None:
            raise exc  # no handler at all: as Litestar, let the server answer 500
        request: Request[Any, Any, Any] = Request(scope, receive)
        response = handler(request, exc)
        await response.to_asgi_response(app=None, request=request)(scope, receive, send)
