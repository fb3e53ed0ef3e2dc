"""Server-side login sessions: the cookie names a UserSession row; logout deletes it."""

from __future__ import annotations

import secrets
from datetime import timedelta

from flask import current_app, request
from flask_babel import lazy_gettext as _l
from sqlalchemy import bindparam, select, update

from portal.extensions import db, login_manager
from portal.models import User, UserSession, utcnow

login_manager.login_view = "auth.login"
login_manager.login_message = _l("Please log in to see this page.")
login_manager.login_message_category = "info"
login_manager.session_protection = "strong"

# Don't write last_seen_at on every request: once a minute is enough for the idle timeout.
_TOUCH_EVERY = timedelta(seconds=60)


def start_session(user: User) -> User:
    """Record a new login for the user and return the user bound to it."""
    row = UserSession(id=secrets.token_urlsafe(32), user_id=user.id, ip=request.remote_addr)
    db.session.add(row)
    db.session.commit()
    user.login_session_id = row.id
    return user


def end_session(session_id: str | None) -> None:
    """Delete the login on the server so that no copy of its cookie works again."""
    if session_id:
        db.session.execute(db.delete(UserSession).where(UserSession.id == session_id))
        db.session.commit()


# Built once (every staff request runs it; building the statement costs more than running it): a login's times with
# its user, in one query. Only the user is loaded as an object (the ORM's joined loading of both costs twice the
# query); the login row is then written by its id.
LOGIN_WITH_USER = (
    select(UserSession.created_at, UserSession.last_seen_at, User)
    .join(User, User.id == UserSession.user_id)
    .where(UserSession.id == bindparam("session_id"))
)


@login_manager.user_loader
def load_user(session_id: str) -> User | None:
    """The user of a live login, or None when it has ended, idled out or grown too old."""
    found = db.session.execute(LOGIN_WITH_USER, {"session_id": session_id}).one_or_none()  # one query
    if found is None:
        return None
    created_at, last_seen_at, user = found
    if not user.active:
        return None
    now = utcnow()
    idle = timedelta(minutes=current_app.config["SESSION_IDLE_MINUTES"])
    absolute = timedelta(hours=current_app.config["SESSION_ABSOLUTE_HOURS"])
    if now - last_seen_at > idle or now - created_at > absolute:
        end_session(session_id)
        return None
    if now - last_seen_at > _TOUCH_EVERY:
        db.session.execute(update(UserSession).where(UserSession.id == session_id).values(last_seen_at=now))
        db.session.commit()
    user.login_session_id = session_id
    return user
