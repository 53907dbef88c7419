"""Scanner API bodies decoded with msgspec: a body that does not fit is a 422 `malformed` naming the field."""

from __future__ import annotations

import re
from typing import TypeVar

import msgspec

from app.errors import Invalid

T = TypeVar("T")

# msgspec names the offending field in one of two places: a `$.path` suffix ("Expected `int`, got `str`
# - at `$.results[0].port`") or the message itself ("Object missing required field `lease_token`").
_AT = re.compile(r" - at `\$\.?(?P<path>[^`]*)`$")
_NAMED = re.compile(r"^Object (?:missing required|contains unknown) field `(?P<name>[^`]*)`")

_DECODERS: dict[type, msgspec.json.Decoder] = {}


def field_of(message: str) -> str:
    """The dotted path of the field a msgspec error is about; `body` when it is about the whole body."""
    at = _AT.search(message)
    path = at.group("path") if at else ""
    named = _NAMED.match(message)
    if named:
        path = f"{path}.{named.group('name')}" if path else named.group("name")
    return path or "body"


def decode_body(body: bytes, type_: type[T], what: str) -> T:
    """Decode one request body into `type_`, or refuse it: `Invalid` (422, reason `malformed`, `field`)."""
    decoder = _DECODERS.get(type_)
    if decoder is None:
        decoder = _DECODERS[type_] = msgspec.json.Decoder(type_)
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        field = field_of(str(exc))
        raise Invalid(f"{what}: {field}: {exc}", reason="malformed", field=field) from None
    except msgspec.DecodeError as exc:
        # Not JSON at all (or empty): no field to name but the body itself.
        raise Invalid(f"{what}: body is not a JSON object: {exc}", reason="malformed", field="body") from None
