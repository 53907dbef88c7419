"""Filter parameters of GUI pages: parsed by hand so a bad value becomes a message beside its input."""

from __future__ import annotations

from datetime import UTC, datetime

from litestar import Request


class Filters:
    """Reads query parameters, collecting a message per bad one in `errors`."""

    def __init__(self, request: Request) -> None:
        self.request = request
        self.errors: dict[str, str] = {}
        self.values: dict[str, str] = {k: v.strip() for k, v in request.query_params.items()}

    def text(self, name: str, max_length: int = 200) -> str | None:
        value = self.values.get(name, "")
        if len(value) > max_length:
            self.errors[name] = f"at most {max_length} characters"
            return None
        return value or None

    def integer(self, name: str, low: int = 0, high: int = 2**62) -> int | None:
        value = self.values.get(name, "")
        if not value:
            return None
        if not value.isdigit() or not low <= int(value) <= high:
            self.errors[name] = f"expected a whole number from {low} to {high}"
            return None
        return int(value)

    def moment(self, name: str) -> datetime | None:
        value = self.values.get(name, "")
        if not value:
            return None
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            self.errors[name] = "expected a date and time such as 2026-01-31T14:00"
            return None
        # Every time on the pages is UTC, so a time typed without an offset is UTC too.
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
