"""Helpers every GUI controller uses: the page context, form parsing with per-field errors, pagination."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlencode

import msgspec
from litestar import Request
from litestar.datastructures import Cookie
from litestar.response import Redirect, Template

from app.domain.sessions.service import SessionUser
from app.errors import DomainError
from app.roles.manager.auth import CSRF_FIELD
from app.roles.manager.gui.nav import visible

T = TypeVar("T")
FORM_ERROR = "_form"


def session_user(request: Request) -> SessionUser | None:
    user: SessionUser | None = request.scope.get("mipo_user")  # type: ignore[assignment]
    return user


def page(request: Request, template: str, title: str, *, status: int = 200, cookies: list[Cookie] | None = None,
         **context: Any) -> Template:
    """Render a full page (or, for htmx requests of a fragment template, just the fragment)."""
    user = session_user(request)
    base: dict[str, Any] = {
        "request": request, "user": user, "csrf": user.csrf_token if user else "", "title": title,
        "nav": visible(user), "path": request.url.path, "notice": request.query_params.get("notice", ""),
        "errors": {}, "values": {},
    }
    return Template(template_name=template, context={**base, **context}, status_code=status,
                    headers={"Cache-Control": "no-store"}, cookies=cookies)


def redirect(path: str, notice: str = "") -> Redirect:
    joiner = "&" if "?" in path else "?"
    return Redirect(path + ((joiner + urlencode({"notice": notice})) if notice else ""), status_code=303)


class FormInvalid(Exception):
    """Raised by `parse_form`; `errors` maps a field name (or `_form`) to the message shown beside it."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


async def form_values(request: Request) -> dict[str, str]:
    form = await request.form()
    return {k: v.strip() for k, v in form.items() if k != CSRF_FIELD and isinstance(v, str)}


def parse_form(kind: type[T], values: dict[str, str], *, checkboxes: tuple[str, ...] = (),
               lists: tuple[str, ...] = ()) -> T:
    """Convert form strings into `kind`; empty fields take the struct's default; errors name the field."""
    data: dict[str, Any] = {k: v for k, v in values.items() if v != ""}
    for name in checkboxes:
        data[name] = name in values and values[name] not in ("", "false", "off", "0")
    for name in lists:
        raw = values.get(name, "")
        data[name] = [part.strip() for part in raw.replace("\n", ",").split(",") if part.strip()]
    try:
        return msgspec.convert(data, kind, strict=False)
    except msgspec.ValidationError as exc:
        raise FormInvalid(validation_errors(exc)) from None


def validation_errors(exc: msgspec.ValidationError) -> dict[str, str]:
    text = str(exc)
    message, sep, where = text.rpartition(" - at `$.")
    if not sep:
        if text.startswith("Object missing required field `"):
            field = text.split("`")[1]
            return {field: "this field is required"}
        if text.startswith("Object contains unknown field `"):
            return {FORM_ERROR: f"unexpected field {text.split('`')[1]}"}
        return {FORM_ERROR: text}
    field = where.rstrip("`").split("[")[0].split(".")[0]
    return {field: _friendly(message)}


def _friendly(message: str) -> str:
    """msgspec's wording, rephrased for a person filling in a form."""
    if message.startswith("Expected `str` matching regex"):
        return "not in the expected form " + message.removeprefix("Expected `str` matching regex ")
    if message.startswith("Expected `str` of length >= 1"):
        return "this field is required"
    if message.startswith("Expected `int`"):
        return "expected a whole number" + message.removeprefix("Expected `int`")
    return message


def domain_errors(exc: DomainError) -> dict[str, str]:
    return {exc.field or FORM_ERROR: str(exc)}


@dataclass(frozen=True)
class Pager:
    """Offset pagination for a table: page numbers start at 1."""

    page: int
    per_page: int
    total: int

    @classmethod
    def of(cls, request: Request, per_page: int = 50) -> Pager:
        raw = request.query_params.get("page", "1")
        number = int(raw) if raw.isdigit() and 0 < int(raw) < 1_000_000 else 1
        return cls(number, per_page, 0)

    def with_total(self, total: int) -> Pager:
        return Pager(self.page, self.per_page, total)

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.per_page

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.per_page))

    def link(self, request: Request, number: int) -> str:
        params = {k: v for k, v in request.query_params.items() if k not in ("page", "notice")}
        return request.url.path + "?" + urlencode({**params, "page": number})
