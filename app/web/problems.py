"""Every refusal is an RFC 9457 problem document with a reason; no stack trace ever leaves."""

from __future__ import annotations

import logging

import psycopg
from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException

from app.errors import DomainError

log = logging.getLogger("mipo.web")

PROBLEM = "application/problem+json"


def problem(status: int, title: str, reason: str, detail: str = "", **extra: object) -> Response[dict]:
    body: dict[str, object] = {"type": "about:blank", "title": title, "status": status, "reason": reason}
    if detail:
        body["detail"] = detail
    body.update(extra)
    return Response(body, status_code=status, media_type=PROBLEM)


def domain_error_handler(_: Request, exc: DomainError) -> Response[dict]:
    extra = {"field": exc.field} if exc.field else {}
    return problem(exc.status_code, type(exc).__name__, exc.reason, str(exc), **extra)


def http_exception_handler(_: Request, exc: HTTPException) -> Response[dict]:
    reason = "malformed" if isinstance(exc, ValidationException) else "http_error"
    extra: dict[str, object] = {}
    if isinstance(exc, ValidationException) and exc.extra:
        extra["errors"] = exc.extra
    return problem(exc.status_code, exc.__class__.__name__, reason, str(exc.detail), **extra)


def database_error_handler(request: Request, exc: psycopg.Error) -> Response[dict]:
    # Operational failures (database down, pool timeout) are 503 so callers retry; never a 500 page.
    log.warning("database error on %s %s: %s", request.method, request.url.path, exc)
    return problem(503, "Database unavailable", "database_unavailable", "a database did not answer; retry")


def unexpected_error_handler(request: Request, exc: Exception) -> Response[dict]:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem(500, "Internal error", "internal_error", "the error was logged")


EXCEPTION_HANDLERS = {
    DomainError: domain_error_handler,
    HTTPException: http_exception_handler,
    psycopg.Error: database_error_handler,
    TimeoutError: database_error_handler,
    Exception: unexpected_error_handler,
}

__all__ = ["EXCEPTION_HANDLERS", "PROBLEM", "MediaType", "problem"]
