"""Which agent version the appliance requires, and whether a scanner's reported version falls short."""

from __future__ import annotations

import msgspec

from app.config import Settings
from app.domain.scanners.schemas import ScannerRead
from app.scanner.versions import older_than

# The oldest agent whose scanner-API calls this appliance still understands. Raise it only when the
# protocol changes: every older agent then stops claiming jobs until its host re-runs the install command.
API_MIN_AGENT_VERSION = "0.1.0"


def required_agent_version(settings: Settings) -> str:
    return settings.scanner.min_agent_version or API_MIN_AGENT_VERSION


def with_outdated(scanner: ScannerRead, settings: Settings) -> ScannerRead:
    """The scanner with `outdated` set from the version of its last heartbeat (or enrolment)."""
    outdated = scanner.version is not None and older_than(scanner.version, required_agent_version(settings))
    return msgspec.structs.replace(scanner, outdated=outdated) if outdated != scanner.outdated else scanner
