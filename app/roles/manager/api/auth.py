"""`/api/auth/…`: log in (JSON), who am I, change my password, log out."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import JSONBody

from app.domain.sessions import service as sessions
from app.domain.sessions.service import SessionUser
from app.domain.users import service as users
from app.domain.users.schemas import PasswordChange, Role
from app.roles.manager.auth import client_address, cookie_name, expired_cookie, session_cookie
from app.web.deps import AppSettings, ConfigConn
from app.web.problems import problem


class LoginRequest(msgspec.Struct, forbid_unknown_fields=True):
    username: Annotated[str, msgspec.Meta(min_length=1, max_length=256, pattern=r"^[^\x00]+$")]
    password: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]


class Me(msgspec.Struct):
    username: str
    role: Role
    must_change_password: bool
    csrf_token: str


class Problem(msgspec.Struct):
    type: str
    title: str
    status: int
    reason: str
    detail: str = ""


_REFUSALS = {
    "bad_credentials": (401, "wrong username or password"),
    "throttled": (429, "too many failed logins; wait a few minutes and try again"),
    "disabled": (403, "this account is disabled; ask an admin"),
}
_PROBLEM_SPEC = {
    code: ResponseSpec(data_container=Problem, description=text, media_type="application/problem+json")
    for code, text in ((401, "wrong username or password"), (403, "disabled account"), (429, "throttled"))
}


def _me(user: SessionUser) -> Me:
    return Me(user.username, user.role, user.must_change_password, user.csrf_token)  # type: ignore[arg-type]


@post("/auth/login", opt={"public": True}, responses=_PROBLEM_SPEC, status_code=200)
async def login(data: JSONBody[LoginRequest], request: Request, config_conn: ConfigConn,
                settings: AppSettings) -> Response[Me] | Response[dict]:
    # Refusals are returned, not raised: the transaction must commit so the failed attempt counts.
    result = await sessions.login(config_conn, settings.session, data.username, data.password,
                                  client_address(request, settings), request.headers.get("user-agent"),
                                  previous_token=request.cookies.get(cookie_name(settings), ""))
    if result.outcome != "ok" or result.user is None:
        status, text = _REFUSALS[result.outcome]
        return problem(status, "Login refused", result.outcome, text)
    return Response(_me(result.user), cookies=[session_cookie(settings, result.token)])


@get("/auth/me", opt={"allow_password_change": True})
async def me(session_user: NamedDependency[SessionUser]) -> Me:
    return _me(session_user)


@post("/auth/password", opt={"allow_password_change": True, "min_role": "viewer"}, status_code=204)
async def change_password(data: JSONBody[PasswordChange], config_conn: ConfigConn,
                          session_user: NamedDependency[SessionUser]) -> None:
    await users.change_own_password(config_conn, session_user.user_id, data, keep_session_hash=session_user.id_hash)


@post("/auth/logout", opt={"allow_password_change": True, "min_role": "viewer"}, status_code=204)
async def logout(config_conn: ConfigConn, session_user: NamedDependency[SessionUser],
                 settings: AppSettings) -> Response[None]:
    await sessions.logout(config_conn, session_user.id_hash)
    return Response(None, status_code=204, cookies=[expired_cookie(settings)])


ROUTES = [login, me, change_password, logout]
