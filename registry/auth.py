"""Users, roles and API tokens.

Roles are ordered: ``reader`` (read everything) < ``writer`` (register versions, record runs,
submit jobs, sync) < ``admin`` (lifecycle changes, users). A token is 32 random bytes shown
once at creation; only its sha256 is stored.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import TYPE_CHECKING

from sqlalchemy import select

from registry.models import ROLES, Token, User
from registry.types import Conflict, RegistryError

if TYPE_CHECKING:
    from registry.service import Registry

__all__ = ["create_user", "create_token", "authenticate", "role_allows", "ROLES"]

_USER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$")


def role_allows(role: str | None, needed: str) -> bool:
    return role is not None and ROLES.index(role) >= ROLES.index(needed)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_user(reg: Registry, name: str, role: str) -> str:
    """Create a user with ``role`` and return its first token."""
    if role not in ROLES:
        raise RegistryError(f"role {role!r} is not one of {list(ROLES)}")
    if not isinstance(name, str) or not _USER.match(name):
        raise RegistryError(f"invalid user name {name!r}")
    with reg.session() as s:
        if s.scalar(select(User).where(User.name == name)) is not None:
            raise Conflict(f"user {name!r} exists; create a token for it with create_token")
        user = User(name=name, role=role)
        s.add(user)
        s.flush()
        token = "mml_" + secrets.token_urlsafe(32)
        s.add(Token(user_id=user.id, token_hash=_hash(token)))
    return token


def create_token(reg: Registry, name: str, label: str = "default") -> str:
    with reg.session() as s:
        user = s.scalar(select(User).where(User.name == name))
        if user is None:
            raise RegistryError(f"no user {name!r}")
        token = "mml_" + secrets.token_urlsafe(32)
        s.add(Token(user_id=user.id, token_hash=_hash(token), name=label))
    return token


def authenticate(reg: Registry, token: str | None) -> tuple[str, str] | None:
    """(user name, role) for a valid, unrevoked token; None otherwise."""
    if not token or len(token) > 200:
        return None
    with reg.session(read=True) as s:
        row = s.scalar(select(Token).where(Token.token_hash == _hash(token), Token.revoked.is_(False)))
        if row is None:
            return None
        return row.user.name, row.user.role
