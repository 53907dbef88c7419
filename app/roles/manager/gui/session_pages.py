"""Login, logout and password change pages."""

from __future__ import annotations

import hmac
import secrets

import msgspec
from litestar import Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.di import NamedDependency
from litestar.response import Redirect, Template

from app.config import Settings
from app.domain.sessions import service as sessions
from app.domain.sessions.service import SessionUser
from app.domain.users import service as users
from app.domain.users.schemas import PasswordChange
from app.errors import DomainError
from app.roles.manager.auth import client_address, cookie_name, current_user, expired_cookie, session_cookie
from app.roles.manager.gui.render import FormInvalid, domain_errors, form_values, page, parse_form, redirect
from app.web.deps import AppSettings, ConfigConn

LOGIN_FIELD = "login_token"
_REFUSALS = {
    "bad_credentials": (401, "Wrong username or password."),
    "throttled": (429, "Too many failed logins. Wait a few minutes, then try again."),
    "disabled": (403, "This account is disabled. Ask an administrator."),
}


def _login_cookie_name(settings: Settings) -> str:
    return "__Host-mipo_login" if settings.session.secure_cookies else "mipo_login"


def _safe_next(target: str | None) -> str:
    # Only local paths: an attacker's link must not turn the login page into an open redirect.
    if target and target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return "/"


def _login_page(request: Request, settings: Settings, *, status: int = 200, error: str = "",
                username: str = "") -> Template:
    # Login CSRF: a double-submit token in a SameSite=Strict cookie and the form (there is no session yet).
    token = secrets.token_urlsafe(24)
    cookie = Cookie(key=_login_cookie_name(settings), value=token, path="/", httponly=True,
                    secure=settings.session.secure_cookies, samesite="strict", max_age=3600)
    return page(request, "login.html", "Log in", status=status, cookies=[cookie], error=error, login_token=token,
                username=username, next=_safe_next(request.query_params.get("next")))


@get("/login", opt={"public": True})
async def login_form(request: Request, settings: AppSettings) -> Template | Redirect:
    if await current_user(request) is not None:
        return Redirect("/", status_code=303)
    return _login_page(request, settings)


@post("/login", opt={"public": True})
async def login_submit(request: Request, config_conn: ConfigConn,
                       settings: AppSettings) -> Template | Redirect:
    values = await form_values(request)
    cookie = request.cookies.get(_login_cookie_name(settings), "")
    if not cookie or not hmac.compare_digest(cookie.encode(), values.get(LOGIN_FIELD, "").encode()):
        return _login_page(request, settings, status=403, error="The login form expired. Please try again.")
    username = values.get("username", "")
    result = await sessions.login(config_conn, settings.session, username, values.get("password", ""),
                                  client_address(request, settings), request.headers.get("user-agent"),
                                  previous_token=request.cookies.get(cookie_name(settings), ""))
    if result.outcome != "ok" or result.user is None:
        status, text = _REFUSALS[result.outcome]
        return _login_page(request, settings, status=status, error=text, username=username)
    target = "/password" if result.user.must_change_password else _safe_next(values.get("next"))
    return Redirect(target, status_code=303, cookies=[
        session_cookie(settings, result.token),
        Cookie(key=_login_cookie_name(settings), value="", path="/", max_age=0,
               secure=settings.session.secure_cookies, httponly=True, samesite="strict"),
    ])


@post("/logout", opt={"allow_password_change": True, "min_role": "viewer"})
async def logout(config_conn: ConfigConn, session_user: NamedDependency[SessionUser],
                 settings: AppSettings) -> Redirect:
    await sessions.logout(config_conn, session_user.id_hash)
    return Redirect("/login", status_code=303, cookies=[expired_cookie(settings)])


@get("/password", opt={"allow_password_change": True})
async def password_form(request: Request) -> Template:
    return page(request, "password.html", "Change password")


@post("/password", opt={"allow_password_change": True, "min_role": "viewer"})
async def password_submit(request: Request, config_conn: ConfigConn,
                          session_user: NamedDependency[SessionUser]) -> Response:
    values = await form_values(request)
    try:
        if values.get("new_password") != values.get("confirm_password"):
            raise FormInvalid({"confirm_password": "the two new passwords differ"})
        data = parse_form(PasswordChange, {k: values.get(k, "") for k in ("current_password", "new_password")})
        async with config_conn.transaction():  # a savepoint: a refused change leaves nothing behind
            await users.change_own_password(config_conn, session_user.user_id, data,
                                            keep_session_hash=session_user.id_hash)
    except FormInvalid as exc:
        return page(request, "password.html", "Change password", status=422, errors=exc.errors)
    except (DomainError, msgspec.ValidationError) as exc:
        errors = domain_errors(exc) if isinstance(exc, DomainError) else {"_form": str(exc)}
        return page(request, "password.html", "Change password", status=422, errors=errors)
    return redirect("/", "Password changed.")


ROUTES = [login_form, login_submit, logout, password_form, password_submit]
