"""Scanner lifecycle rules: create + enrolment token, enrol (token → key), authenticate a key, admin changes."""

from __future__ import annotations

import hashlib
import ipaddress
import shlex
import ssl
from pathlib import Path

import msgspec
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from app.config import Settings
from app.domain.audit.service import record
from app.domain.events.service import emit
from app.domain.scanners import keys
from app.domain.scanners import repository as repo
from app.domain.scanners.auth_cache import KeyRecord, Network, ScannerAuthCache
from app.domain.scanners.schemas import (
    AuthenticatedScanner,
    EnrolAnswer,
    Enrolment,
    EnrolRequest,
    ScannerCreate,
    ScannerRead,
    ScannerUpdate,
    TokenCreate,
    TokenRead,
)
from app.domain.scanners.versions import required_agent_version, with_outdated
from app.errors import Conflict, Forbidden, Invalid, NotFound, Unauthorized
from app.scanner.versions import older_than


def _network(value: str | None, field: str) -> str | None:
    if value is None or value == "":
        return None
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        raise Invalid(f"{field}: expected a network such as 198.18.0.0/24, got {value!r}", field=field) from None


def ca_pem_and_fingerprint(settings: Settings) -> tuple[str, str] | None:
    """The appliance CA (PEM) and the SHA-256 of its DER form, or None when none is configured."""
    if not settings.scanner.ca_file:
        return None
    pem = Path(settings.scanner.ca_file).read_text()
    return pem, hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()


def install_command(settings: Settings) -> tuple[str, str | None]:
    """The one command an operator runs on a scanner host; the token is typed at its prompt, never in it."""
    url = settings.public_url.rstrip("/") + "/scanner/install.sh"
    ca = ca_pem_and_fingerprint(settings)
    if ca is None:
        return f"curl -fsS {shlex.quote(url)} | sudo sh -s --", None
    pem, fingerprint = ca
    # bash process substitution hands curl the CA without a temporary file; the script re-checks the fingerprint.
    return (f"curl -fsS --cacert <(printf '%s' {shlex.quote(pem.strip())}) {shlex.quote(url)}"
            f" | sudo sh -s -- --ca-sha256 {fingerprint}", fingerprint)


async def _read(conn: AsyncConnection, settings: Settings, scanner_id: int) -> ScannerRead:
    scanner = await repo.get_scanner(conn, scanner_id, settings.scanner.offline_after)
    if scanner is None:
        raise NotFound(f"no scanner with id {scanner_id}")
    return with_outdated(scanner, settings)


async def list_scanners(conn: AsyncConnection, settings: Settings) -> list[ScannerRead]:
    return [with_outdated(s, settings) for s in await repo.list_scanners(conn, settings.scanner.offline_after)]


async def count_outdated(conn: AsyncConnection, settings: Settings) -> int:
    """Scanners whose last reported agent version is too old to take jobs (those `?state=outdated` lists).

    Counted per distinct version with the same comparison as `with_outdated`, not in SQL, so the dashboard
    and the scanners list can never disagree on what "outdated" means.
    """
    required = required_agent_version(settings)
    return sum(n for version, n in (await repo.version_counts(conn)).items() if older_than(version, required))


async def get_scanner(conn: AsyncConnection, settings: Settings, scanner_id: int) -> ScannerRead:
    return await _read(conn, settings, scanner_id)


async def _issue(conn: AsyncConnection, settings: Settings, actor: str, scanner_id: int,
                 data: TokenCreate) -> Enrolment:
    token = keys.new_token()
    bind = _network(data.bind_network, "bind_network")
    ttl = data.ttl_seconds or settings.scanner.enrolment_token_ttl
    token_id, expires_at = await repo.insert_token(conn, scanner_id, keys.digest(token), bind, actor, ttl)
    await record(conn, actor, "enrolment_token.create", "scanner", scanner_id, None,
                 {"token_id": token_id, "bind_network": bind, "expires_at": expires_at.isoformat()})
    command, fingerprint = install_command(settings)
    return Enrolment(scanner=await _read(conn, settings, scanner_id), token_id=token_id, token=token,
                     expires_at=expires_at, install_command=command, ca_sha256=fingerprint)


async def create_scanner(conn: AsyncConnection, settings: Settings, actor: str, data: ScannerCreate) -> Enrolment:
    scanner_id = await repo.insert_scanner(conn, data.name, data.description, data.rate_limit, data.concurrency)
    if scanner_id is None:
        raise Conflict(f"a scanner named {data.name!r} already exists", reason="name_taken", field="name")
    await record(conn, actor, "scanner.create", "scanner", scanner_id, None, msgspec.to_builtins(data))
    return await _issue(conn, settings, actor, scanner_id, TokenCreate(bind_network=data.bind_network))


async def issue_token(conn: AsyncConnection, settings: Settings, actor: str, scanner_id: int,
                      data: TokenCreate) -> Enrolment:
    """A fresh token for an existing scanner (re-install): the host keeps its identity and history."""
    await _read(conn, settings, scanner_id)
    return await _issue(conn, settings, actor, scanner_id, data)


async def list_tokens(conn: AsyncConnection, settings: Settings, scanner_id: int) -> list[TokenRead]:
    await _read(conn, settings, scanner_id)
    return await repo.list_tokens(conn, scanner_id)


async def revoke_token(conn: AsyncConnection, actor: str, scanner_id: int, token_id: int) -> TokenRead:
    token = await repo.revoke_token(conn, scanner_id, token_id)
    if token is None:
        raise NotFound(f"scanner {scanner_id} has no enrolment token {token_id}")
    await record(conn, actor, "enrolment_token.revoke", "scanner", scanner_id, None, {"token_id": token_id})
    return token


async def rotate_key(conn: AsyncConnection, settings: Settings, actor: str, scanner_id: int) -> Enrolment:
    """Revoke every key of the scanner now and issue a token: re-running the install enrols the new key."""
    await _read(conn, settings, scanner_id)
    revoked = await repo.revoke_keys(conn, scanner_id)
    await record(conn, actor, "scanner.rotate_key", "scanner", scanner_id, None, {"keys_revoked": revoked})
    return await _issue(conn, settings, actor, scanner_id, TokenCreate())


async def set_status(conn: AsyncConnection, settings: Settings, actor: str, scanner_id: int,
                     status: str) -> ScannerRead:
    before = await _read(conn, settings, scanner_id)
    if status == "active" and before.host_id is None:
        status = "pending"  # enabled but never enrolled: it becomes active at its first enrolment
    await repo.update_scanner(conn, scanner_id, {"status": status})
    await record(conn, actor, "scanner.disable" if status == "disabled" else "scanner.enable", "scanner",
                 scanner_id, {"status": before.status}, {"status": status})
    return await _read(conn, settings, scanner_id)


async def update_scanner(conn: AsyncConnection, settings: Settings, actor: str, scanner_id: int,
                         data: ScannerUpdate) -> ScannerRead:
    before = await _read(conn, settings, scanner_id)
    fields = {k: v for k, v in msgspec.structs.asdict(data).items() if v is not None}
    if fields:
        await repo.update_scanner(conn, scanner_id, fields)
        await record(conn, actor, "scanner.update", "scanner", scanner_id,
                     {k: getattr(before, k) for k in fields}, fields)
    return await _read(conn, settings, scanner_id)


async def enrol(conn: AsyncConnection, request: EnrolRequest, address: str) -> EnrolAnswer:
    """Token → permanent key. The key goes to the scanner already bound to this host, if any (re-install)."""
    token_hash = keys.digest(request.token)
    token = await repo.consume_token(conn, token_hash, address)
    if token is None:
        state = await repo.token_state(conn, token_hash, address)
        if state is None:
            raise Unauthorized("unknown enrolment token; create a new one in the manager", reason="unknown_token")
        for flag, reason, message in (
            ("revoked", "revoked_token", "this enrolment token was revoked"),
            ("used", "used_token", "this enrolment token was already used; create a new one"),
            ("expired", "expired_token", "this enrolment token has expired; create a new one"),
            ("wrong_address", "address_not_allowed", f"this token is not valid from {address}"),
        ):
            if state[flag]:
                raise Forbidden(message, reason=reason)
        raise Conflict("the enrolment token changed while it was checked; retry", reason="token_race")
    existing = await repo.scanner_by_host(conn, request.host_id)
    target = await repo.scanner_for_update(conn, token["scanner_id"])
    if target is None:
        raise NotFound("the scanner of this token was deleted")
    if existing is not None and existing["id"] != target["id"]:
        # Same host, new token for a new scanner row: keep the host's identity and history instead.
        await repo.retire_placeholder(conn, target["id"], existing["name"])
        target = existing
    await repo.bind_host(conn, target["id"], request.host_id, token["bind_network"], request.version)
    await repo.revoke_keys(conn, target["id"])
    key_id, key = keys.new_key()
    await repo.insert_key(conn, target["id"], key_id, keys.digest(key))
    await emit(conn, "scanner_enrolled", f"scanner {target['name']} enrolled from {address}",
               scanner_id=target["id"], details={"hostname": request.hostname, "version": request.version,
                                                 "reinstall": existing is not None})
    return EnrolAnswer(scanner_id=target["id"], scanner_name=target["name"], key=key)


def _check_key(rec: KeyRecord | None, presented: str, address: str) -> AuthenticatedScanner:
    if rec is None or not keys.key_matches(presented, rec.key_hash):
        raise Unauthorized("unknown API key", reason="unknown_key")
    if rec.revoked:
        raise Forbidden("this API key was revoked; re-enrol the scanner", reason="revoked_key")
    if rec.status == "disabled":
        raise Forbidden("this scanner is disabled", reason="scanner_disabled")
    if rec.bound_network is not None and not _address_in(address, rec.bound_network):
        raise Forbidden(f"this key is not accepted from {address}", reason="address_not_allowed")
    return AuthenticatedScanner(id=rec.scanner_id, name=rec.name, status=rec.status,
                                rate_limit=rec.rate_limit, concurrency=rec.concurrency, address=address)


def _address_in(address: str, network: Network) -> bool:
    try:
        return ipaddress.ip_address(address) in network
    except ValueError:
        return False


async def authenticate(cache: ScannerAuthCache, pool: AsyncConnectionPool, presented: str | None,
                       address: str) -> AuthenticatedScanner:
    """Key (constant-time hash compare), revocation, disabled, bound network; from ingest's key cache."""
    key_id = keys.split_key(presented or "")
    if key_id is None:
        raise Unauthorized("missing or malformed X-Mipo-Key header", reason="unknown_key")
    return _check_key(await cache.lookup(pool, key_id), presented or "", address)
