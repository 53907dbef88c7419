"""Who is asking and may they: session cookie, CSRF token and role checks for every manager route."""

from __future__ import annotations

import hmac
import ipaddress
from typing import Any

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie
from litestar.di import NamedDependency, Provide
from litestar.handlers.base import BaseRouteHandler

from app.config import Settings
from app.domain.sessions.service import SessionUser, resolve
from app.domain.users.schemas import ROLE_RANK
from app.errors import Forbidden, Unauthorized

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
POLL_HEADER = "x-mipo-poll"


def cookie_name(settings: Settings) -> str:
    # Browsers refuse a `__Host-` cookie without Secure, so plain-HTTP test setups drop the prefix.
    return "__Host-mipo_session" if settings.session.secure_cookies else "mipo_session"


def session_cookie(settings: Settings, token: str) -> Cookie:
    return Cookie(key=cookie_name(settings), value=token, path="/", secure=settings.session.secure_cookies,
                  httponly=True, samesite="strict", max_age=settings.session.absolute_hours * 3600)


def expired_cookie(settings: Settings) -> Cookie:
    return Cookie(key=cookie_name(settings), value="", path="/", secure=settings.session.secure_cookies,
                  httponly=True, samesite="strict", max_age=0)


def client_address(connection: ASGIConnection, settings: Settings) -> str | None:
    """The peer, or the last X-Forwarded-For hop when the peer is a trusted proxy (Traefik appends it)."""
    peer = _ip(connection.client.host if connection.client else None)
    if peer is None:
        return None
    trusted = [ipaddress.ip_network(n, strict=False) for n in settings.manager.trusted_proxies]
    if any(peer in net for net in trusted):
        hops = [h.strip() for h in connection.headers.get("x-forwarded-for", "").split(",") if h.strip()]
        forwarded = _ip(hops[-1]) if hops else None
        if forwarded is not None:
            return str(forwarded)
    return str(peer)


def _ip(value: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value) if value else None
    except ValueError:
        return None


def settings_of(connection: ASGIConnection) -> Settings:
    settings: Settings = connection.app.state.settings
    return settings


async def current_user(connection: ASGIConnection) -> SessionUser | None:
    """Resolve (once per request) the session named by the cookie; touches its idle timer."""
    if "mipo_user" in connection.scope:
        cached: SessionUser | None = connection.scope["mipo_user"]  # type: ignore[typeddict-item]
        return cached
    settings = settings_of(connection)
    token = connection.cookies.get(cookie_name(settings), "")
    user = None
    if token:
        pool = connection.app.state.pools.get("config")
        async with pool.connection() as conn, conn.transaction():
            # Live parts of pages (htmx polling) say so: they must not keep an unattended session alive.
            polling = connection.headers.get(POLL_HEADER) == "1"
            user = await resolve(conn, settings.session, token, activity=not polling)
    connection.scope["mipo_user"] = user  # type: ignore[typeddict-unknown-key]
    if user is not None:
        connection.scope["user"] = user
    return user


async def _csrf_supplied(connection: ASGIConnection) -> str:
    header = connection.headers.get(CSRF_HEADER)
    if header:
        return header
    content_type = connection.headers.get("content-type", "")
    if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        # The body is cached in the connection state, so the handler can still read the form.
        form = await Request(connection.scope, connection.receive).form()
        value = form.get(CSRF_FIELD)
        return value if isinstance(value, str) else ""
    return ""


def required_role(method: str, opt: dict[str, Any]) -> str:
    explicit = opt.get("min_role")
    if explicit:
        return str(explicit)
    return "viewer" if method in SAFE_METHODS else "operator"


async def authorize(connection: ASGIConnection, handler: BaseRouteHandler) -> None:
    """Guard on every GUI and API route: logged in, CSRF token on unsafe methods, role high enough."""
    opt = handler.opt
    if opt.get("public"):
        return
    user = await current_user(connection)
    if user is None:
        raise Unauthorized("log in first", reason="not_authenticated")
    method = str(connection.scope.get("method", "GET"))
    if method not in SAFE_METHODS:
        supplied = await _csrf_supplied(connection)
        if not supplied or not hmac.compare_digest(supplied.encode(), user.csrf_token.encode()):
            raise Forbidden("missing or wrong CSRF token: send the X-CSRF-Token header or the csrf_token field",
                            reason="csrf")
    if user.must_change_password and not opt.get("allow_password_change"):
        raise Forbidden("change your password first", reason="password_change_required")
    needed = required_role(method, opt)
    if ROLE_RANK.get(user.role, 0) < ROLE_RANK[needed]:
        raise Forbidden(f"this needs the {needed} role; you are {user.role}", reason="role")


def provide_session_user(request: Request) -> SessionUser:
    user: SessionUser = request.scope["mipo_user"]  # type: ignore[typeddict-item]
    return user


def provide_actor(request: Request) -> str:
    """The `actor: Actor` dependency: the logged-in username, for the audit log."""
    return provide_session_user(request).username


# Handlers declare `actor: Actor` to get the logged-in username (for the audit log).
Actor = NamedDependency[str]

# Every guarded router provides these: `actor` (for the audit log) and `session_user`.
AUTH_DEPENDENCIES = {
    "actor": Provide(provide_actor, sync_to_thread=False),
    "session_user": Provide(provide_session_user, sync_to_thread=False),
}
