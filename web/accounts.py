"""Accounts: users with a role, argon2 password hashes, browser sessions and API tokens.

Shared by `reasongen users ...` and the web app. Tokens are random (secrets.token_urlsafe) and only their
SHA-256 digest is stored, so a database dump does not let anyone sign in.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from storage.models import WebUser, utcnow
from storage.repositories.users import ROLES
from storage.uow import UnitOfWork

SESSION_TTL = timedelta(hours=12)
_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,100}$")
_hasher = PasswordHasher()
# Verified against when the user does not exist, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(8))


@dataclass(frozen=True)
class Principal:
    """Who is asking: a signed-in user (with the session's CSRF token) or a script with an API token."""

    user_id: int
    name: str
    role: str
    csrf_token: str | None = None  # None for API tokens: no cookie, so nothing to forge

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def add_user(uow: UnitOfWork, name: str, role: str, password: str | None) -> WebUser:
    if not _NAME.match(name):
        raise ValueError(f"bad user name {name!r}: use 1-100 letters, digits, or _ . @ -")
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; use one of: {', '.join(ROLES)}")
    if uow.users.by_name(name) is not None:
        raise ValueError(f"user {name!r} exists already; disable it or pick another name")
    if password is not None and len(password) < 8:
        raise ValueError("password too short: use at least 8 characters")
    return uow.users.add(name, role, _hasher.hash(password) if password else None)


def user_dict(user: WebUser) -> dict[str, Any]:
    return {"name": user.name, "role": user.role, "enabled": user.disabled_at is None,
            "has_password": user.password_hash is not None, "created_at": user.created_at,
            "disabled_at": user.disabled_at}


def require_user(uow: UnitOfWork, name: str) -> WebUser:
    user = uow.users.by_name(name)
    if user is None:
        raise LookupError(f"no user {name!r}; list users with: reasongen users list")
    return user


def disable_user(uow: UnitOfWork, name: str) -> None:
    uow.users.disable(require_user(uow, name).id)


def new_token(uow: UnitOfWork, name: str) -> str:
    """A fresh API token for ``name``; shown once, stored as a digest."""
    user = require_user(uow, name)
    if user.disabled_at is not None:
        raise ValueError(f"user {name!r} is disabled; no token issued")
    token = "rg_" + secrets.token_urlsafe(32)
    uow.users.add_token(user.id, digest(token))
    return token


def authenticate(uow: UnitOfWork, name: str, password: str) -> WebUser | None:
    """The enabled user whose password this is, else None (same cost either way)."""
    user = uow.users.by_name(name)
    stored = user.password_hash if user is not None and user.disabled_at is None else None
    try:
        _hasher.verify(stored or _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    if user is None or stored is None:
        return None
    if _hasher.check_needs_rehash(stored):
        uow.users.set_password(user.id, _hasher.hash(password))
    return user


def start_session(uow: UnitOfWork, user: WebUser) -> str:
    """A new session for ``user``; returns the cookie value."""
    token = secrets.token_urlsafe(32)
    uow.users.add_session(user.id, digest(token), secrets.token_urlsafe(32), utcnow() + SESSION_TTL)
    return token


def from_session(uow: UnitOfWork, token: str) -> Principal | None:
    found = uow.users.session_user(digest(token), utcnow())
    if found is None:
        return None
    user, session = found
    return Principal(user.id, user.name, user.role, session.csrf_token)


def from_api_token(uow: UnitOfWork, token: str) -> Principal | None:
    user = uow.users.token_user(digest(token))
    return Principal(user.id, user.name, user.role) if user else None
