"""User management: create, change, disable, delete — audited, and never leaving the system without an admin."""

from __future__ import annotations

from typing import Any

import msgspec
from psycopg import AsyncConnection

from app.domain.audit.service import record
from app.domain.sessions import repository as sessions
from app.domain.users import repository as repo
from app.domain.users.passwords import check_policy, hash_password, verify_password
from app.domain.users.schemas import PasswordChange, UserCreate, UserRead, UserUpdate
from app.errors import Conflict, Invalid, NotFound


def _public(user: UserRead) -> dict[str, Any]:
    # What the audit log keeps about a user: never the password hash.
    return {"username": user.username, "role": user.role, "disabled": user.disabled,
            "must_change_password": user.must_change_password}


async def list_users(conn: AsyncConnection, *, query: str | None = None, limit: int = 50,
                     offset: int = 0) -> tuple[list[UserRead], int]:
    return (await repo.list_users(conn, query=query or None, limit=limit, offset=offset),
            await repo.count_users(conn, query=query or None))


async def get_user(conn: AsyncConnection, user_id: int) -> UserRead:
    user = await repo.get_user(conn, user_id)
    if user is None:
        raise NotFound(f"no user with id {user_id}")
    return user


async def create_user(conn: AsyncConnection, actor: str, data: UserCreate) -> UserRead:
    check_policy(data.password, username=data.username)
    new_id = await repo.insert_user(conn, data.username, await hash_password(data.password), data.role,
                                    data.must_change_password)
    if new_id is None:
        raise Conflict(f"a user named {data.username!r} already exists", reason="duplicate", field="username")
    user = await get_user(conn, new_id)
    await record(conn, actor, "create", "user", new_id, None, _public(user))
    return user


async def _ensure_an_admin_remains(conn: AsyncConnection) -> None:
    if await repo.count_active_admins(conn) < 1:
        raise Conflict("this change would leave no enabled admin; promote another user first",
                       reason="last_admin")


async def update_user(conn: AsyncConnection, actor: str, user_id: int, data: UserUpdate) -> UserRead:
    before = await get_user(conn, user_id)
    if before.username == actor and (data.disabled or data.password is not None
                                     or (data.role is not None and data.role != before.role)):
        # No self-lockout: one's own password changes on the password page, proving the current one.
        raise Conflict("you cannot disable, demote or reset yourself; ask another admin "
                       "(change your own password on the password page)", reason="self_change")
    changes: dict[str, Any] = {
        k: v for k, v in msgspec.structs.asdict(data).items() if v is not None and k != "password"
    }
    if data.password is not None:
        check_policy(data.password, username=before.username)
        changes["password_hash"] = await hash_password(data.password)
        changes.setdefault("must_change_password", True)
    await repo.update_user(conn, user_id, changes)
    after = await get_user(conn, user_id)
    await _ensure_an_admin_remains(conn)
    if after.disabled or data.password is not None or after.role != before.role:
        # A disabled user, a reset password or a new role ends every open session of that user.
        await sessions.delete_for_user(conn, user_id)
    audit_after = _public(after) | ({"password": "reset"} if data.password is not None else {})
    await record(conn, actor, "update", "user", user_id, _public(before), audit_after)
    return after


async def delete_user(conn: AsyncConnection, actor: str, user_id: int) -> None:
    before = await get_user(conn, user_id)
    if before.username == actor:
        raise Conflict("you cannot delete your own account", reason="self_delete")
    await repo.delete_user(conn, user_id)
    await _ensure_an_admin_remains(conn)
    await record(conn, actor, "delete", "user", user_id, _public(before), None)


async def change_own_password(conn: AsyncConnection, user_id: int, data: PasswordChange,
                              *, keep_session_hash: bytes | None = None) -> UserRead:
    """The user proves the current password; other sessions of this user end, this one stays."""
    user = await get_user(conn, user_id)
    if not await verify_password(await repo.password_hash(conn, user_id), data.current_password):
        raise Invalid("the current password is wrong", reason="wrong_password", field="current_password")
    check_policy(data.new_password, field="new_password", username=user.username)
    if data.new_password == data.current_password:
        raise Invalid("the new password must differ from the current one", reason="weak_password",
                      field="new_password")
    await repo.update_user(conn, user_id, {"password_hash": await hash_password(data.new_password),
                                           "must_change_password": False})
    await sessions.delete_for_user(conn, user_id, except_hash=keep_session_hash)
    await record(conn, user.username, "change_password", "user", user_id, None, {"username": user.username})
    return await get_user(conn, user_id)


async def ensure_admin(conn: AsyncConnection, actor: str, username: str, password: str) -> bool:
    """Create the first admin (temporary password, changed at first login) unless the name exists; True if made."""
    check_policy(password, username=username)
    new_id = await repo.insert_user(conn, username, await hash_password(password), "admin", True)
    if new_id is None:
        return False
    await record(conn, actor, "create", "user", new_id, None, _public(await get_user(conn, new_id)))
    return True
