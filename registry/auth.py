"""Users, roles and API tokens.

Roles are ordered: ``reader`` (read everything) < ``writer`` (register versions, record runs,
submit jobs, sync) < ``admin`` (lifecycle changes, users). A token is 32 random bytes shown
once at creation; only its sha256 is stored. Tokens may expire (``expires_in_s``), are revoked
(not deleted: the row stays for the audit), and record when they were last used (at most one
write a minute per token).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from registry.models import ROLES, Token, User, utcnow
from registry.types import Conflict, Forbidden, NotFound, RegistryError

if TYPE_CHECKING:
    from registry.service import Registry

__all__ = ["create_user", "create_token", "list_tokens", "revoke_token", "authenticate", "role_allows", "ROLES"]

_USER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$")


def role_allows(role: str | None, needed: str) -> bool:
    return role is not None and ROLES.index(role) >= ROLES.index(needed)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_user(reg: Registry, name: str, role: str, *, actor: str | None = None,
                expires_in_s: int | None = None) -> str:
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
        s.add(Token(user_id=user.id, token_hash=_hash(token), expires_at=_expiry(expires_in_s)))
        reg._audit(s, actor, "user.create", name, role=role)
    return token


def _expiry(expires_in_s: int | None) -> dt.datetime | None:
    if expires_in_s is None:
        return None
    if not isinstance(expires_in_s, int) or isinstance(expires_in_s, bool) or expires_in_s <= 0:
        raise RegistryError("a token's expiry is a positive number of seconds")
    return utcnow() + dt.timedelta(seconds=expires_in_s)


def _aware(t: dt.datetime | None) -> dt.datetime | None:
    return None if t is None else (t if t.tzinfo else t.replace(tzinfo=dt.UTC))


def _iso(t: dt.datetime | None) -> str | None:
    t = _aware(t)
    return None if t is None else t.isoformat(timespec="seconds").replace("+00:00", "Z")


def _info(t: Token, user: str) -> dict[str, Any]:
    now = utcnow()
    exp = _aware(t.expires_at)
    state = "revoked" if t.revoked else ("expired" if exp is not None and exp <= now else "active")
    return {"id": t.id, "user": user, "label": t.name, "state": state, "created_at": _iso(t.created_at),
            "expires_at": _iso(t.expires_at), "revoked_at": _iso(t.revoked_at), "last_used_at": _iso(t.last_used_at)}


def create_token(reg: Registry, name: str, label: str = "default", *, expires_in_s: int | None = None,
                 actor: str | None = None) -> tuple[str, dict[str, Any]]:
    """A new token for user ``name``: (the secret, shown once; its public description)."""
    if not isinstance(label, str) or not 1 <= len(label) <= 100:
        raise RegistryError("a token label is 1-100 characters")
    with reg.session() as s:
        user = s.scalar(select(User).where(User.name == name))
        if user is None:
            raise NotFound(f"no user {name!r}")
        token = "mml_" + secrets.token_urlsafe(32)
        row = Token(user_id=user.id, token_hash=_hash(token), name=label, expires_at=_expiry(expires_in_s))
        s.add(row)
        s.flush()
        reg._audit(s, actor, "token.create", name, token_id=row.id, label=label, expires_at=_iso(row.expires_at))
        return token, _info(row, name)


def list_tokens(reg: Registry, user: str | None = None) -> list[dict[str, Any]]:
    with reg.session(read=True) as s:
        stmt = select(Token, User.name).join(User, User.id == Token.user_id).order_by(Token.id)
        if user is not None:
            stmt = stmt.where(User.name == user)
        return [_info(t, n) for t, n in s.execute(stmt).all()]


def revoke_token(reg: Registry, token_id: int, *, actor: str | None = None, role: str | None = "admin") -> dict[str, Any]:
    """Revoke a token (the row stays, for the audit); its owner or an admin."""
    with reg.session() as s:
        row = s.get(Token, token_id)
        if row is None:
            raise NotFound(f"no token {token_id}")
        owner = row.user.name
        if role != "admin" and actor != owner:
            raise Forbidden(f"{actor} may not revoke a token of {owner} (only its owner or an admin)")
        if not row.revoked:
            row.revoked, row.revoked_at = True, utcnow()
            reg._audit(s, actor, "token.revoke", owner, token_id=token_id, label=row.name)
        return _info(row, owner)


#: last_used_at is written at most this often per token (not a write per request)
LAST_USED_EVERY = dt.timedelta(seconds=60)


def authenticate(reg: Registry, token: str | None) -> tuple[str, str] | None:
    """(user name, role) for a valid token: known, not revoked, not expired; None otherwise."""
    if not token or len(token) > 200:
        return None
    now = utcnow()
    with reg.session(read=True) as s:
        row = s.scalar(select(Token).where(Token.token_hash == _hash(token), Token.revoked.is_(False)))
        if row is None:
            return None
        exp, used = _aware(row.expires_at), _aware(row.last_used_at)
        if exp is not None and exp <= now:
            return None
        who, tid = (row.user.name, row.user.role), row.id
    if used is None or now - used > LAST_USED_EVERY:
        with reg.session() as s:
            t = s.get(Token, tid)
            if t is not None:
                t.last_used_at = now
    return who
