"""Only the manager may call the backup API: a shared secret in a header, compared in constant time."""

from __future__ import annotations

import hmac

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from app.config import ConfigError, Settings
from app.domain.backups.schemas import API_TOKEN_HEADER
from app.errors import Unauthorized, Unavailable

TOKEN_HEADER = API_TOKEN_HEADER
MIN_TOKEN_LENGTH = 32


def expected_token(settings: Settings) -> str:
    """Read on every request so a rotated credential takes effect without a restart."""
    try:
        token = settings.credential(settings.backup.api_token_credential)
    except ConfigError:
        token = ""
    if len(token) < MIN_TOKEN_LENGTH:
        raise Unavailable("the backup API credential is missing or shorter than 32 characters; "
                          "set backup.api_token_credential", reason="credential_missing")
    return token


def require_manager_token(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    settings: Settings = connection.app.state.settings
    expected = expected_token(settings)
    supplied = connection.headers.get(TOKEN_HEADER, "")
    if not hmac.compare_digest(supplied.encode(), expected.encode()):
        raise Unauthorized(f"the backup API answers only the manager: send its credential in {TOKEN_HEADER}",
                           reason="bad_credential")
