"""Domain errors raised by services; the web layer maps each to one HTTP status, once."""

from __future__ import annotations


class DomainError(Exception):
    """Base class: `reason` is a short machine-readable code, the message is for a person."""

    status_code = 400
    reason = "invalid"

    def __init__(self, message: str, *, reason: str | None = None, field: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason
        self.field = field


class Invalid(DomainError):
    status_code = 422
    reason = "invalid"


class NotFound(DomainError):
    status_code = 404
    reason = "not_found"


class Conflict(DomainError):
    status_code = 409
    reason = "conflict"


class Unauthorized(DomainError):
    status_code = 401
    reason = "unauthorized"


class Forbidden(DomainError):
    status_code = 403
    reason = "forbidden"


class Unavailable(DomainError):
    status_code = 503
    reason = "unavailable"
