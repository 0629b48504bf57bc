"""Web users, their browser sessions and API tokens. Only SHA-256 digests of session and API tokens are stored."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, select, update

from storage.models import ApiToken, WebSession, WebUser, utcnow
from storage.repositories.base import Repository

ROLES = ("reviewer", "admin")


class UserRepository(Repository):
    # -- users -----------------------------------------------------------------------------------
    def add(self, name: str, role: str, password_hash: str | None) -> WebUser:
        user = WebUser(name=name, role=role, password_hash=password_hash, created_at=utcnow())
        self.session.add(user)
        self.session.flush()
        return user

    def by_name(self, name: str) -> WebUser | None:
        return self.session.scalar(select(WebUser).where(WebUser.name == name))

    def get(self, user_id: int) -> WebUser | None:
        return self.session.get(WebUser, user_id)

    def list(self) -> Sequence[WebUser]:
        return self.session.scalars(select(WebUser).order_by(WebUser.name)).all()

    def set_password(self, user_id: int, password_hash: str) -> None:
        self._run(update(WebUser).where(WebUser.id == user_id).values(password_hash=password_hash))

    def disable(self, user_id: int) -> None:
        """Disabled at once: every session and token of the user stops working."""
        self._run(update(WebUser).where(WebUser.id == user_id).values(disabled_at=utcnow()))
        self._run(delete(WebSession).where(WebSession.user_id == user_id))
        self._run(delete(ApiToken).where(ApiToken.user_id == user_id))

    # -- sessions --------------------------------------------------------------------------------
    def add_session(self, user_id: int, token_hash: str, csrf_token: str, expires_at: datetime) -> None:
        self.session.add(WebSession(user_id=user_id, token_hash=token_hash, csrf_token=csrf_token,
                                    created_at=utcnow(), expires_at=expires_at))

    def session_user(self, token_hash: str, now: datetime) -> tuple[WebUser, WebSession] | None:
        """The enabled user behind an unexpired session token."""
        row = self.session.execute(
            select(WebUser, WebSession).join(WebSession, WebSession.user_id == WebUser.id)
            .where(WebSession.token_hash == token_hash, WebSession.expires_at > now, WebUser.disabled_at.is_(None))
        ).first()
        return (row[0], row[1]) if row else None

    def end_session(self, token_hash: str) -> None:
        self._run(delete(WebSession).where(WebSession.token_hash == token_hash))

    # -- API tokens ------------------------------------------------------------------------------
    def add_token(self, user_id: int, token_hash: str) -> None:
        self.session.add(ApiToken(user_id=user_id, token_hash=token_hash, created_at=utcnow()))

    def token_user(self, token_hash: str) -> WebUser | None:
        return self.session.scalar(
            select(WebUser).join(ApiToken, ApiToken.user_id == WebUser.id)
            .where(ApiToken.token_hash == token_hash, WebUser.disabled_at.is_(None))
        )
