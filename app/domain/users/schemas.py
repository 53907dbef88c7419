"""User structs: what the API reads and accepts; the password hash never leaves the service."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

Role = Literal["admin", "operator", "viewer"]
ROLE_RANK: dict[str, int] = {"viewer": 1, "operator": 2, "admin": 3}
Username = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.@-]{1,64}$", min_length=1, max_length=64)]
Password = Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]


class UserRead(msgspec.Struct):
    id: int
    username: str
    role: Role
    must_change_password: bool
    disabled: bool
    created_at: datetime
    updated_at: datetime


class UserCreate(msgspec.Struct, forbid_unknown_fields=True):
    username: Username
    password: Password
    role: Role = "viewer"
    # A password set by an admin is temporary: its owner replaces it at first login.
    must_change_password: bool = True


class UserUpdate(msgspec.Struct, forbid_unknown_fields=True):
    role: Role | None = None
    disabled: bool | None = None
    password: Password | None = None
    must_change_password: bool | None = None


class PasswordChange(msgspec.Struct, forbid_unknown_fields=True):
    current_password: Password
    new_password: Password
