"""A user changes their own password (issue 12, item 14): current password first, a strong new one, other logins end."""

from __future__ import annotations

import pytest

from portal.extensions import db
from portal.models import AuditEvent, User, UserSession
from portal.security import verify_password
from tests.support.constants import PASSWORD

NEW = "plum-orchard-lantern-42"


def change(client, current=PASSWORD, new=NEW, confirm=None):
    return client.post(
        "/account/password",
        data={
            "current_password": current,
            "new_password": new,
            "confirm_password": new if confirm is None else confirm,
        },
    )


def test_a_user_changes_their_password_and_their_other_logins_end(app, seed, client, auth):
    other = app.test_client()
    other.post("/login", data={"email": "staff@a.example", "password": PASSWORD})
    assert other.get("/orders").status_code == 200
    auth.login(email="staff@a.example")
    assert client.get("/account/password").status_code == 200
    done = change(client)
    assert done.status_code == 303
    assert client.get("/orders").status_code == 200  # this login goes on
    assert other.get("/orders").status_code == 302  # the other one ended
    with app.app_context():
        user = db.session.execute(db.select(User).filter_by(email="staff@a.example")).scalar_one()
        assert verify_password(user.password_hash, NEW)
        assert db.session.query(UserSession).filter_by(user_id=user.id).count() == 1
        event = db.session.execute(db.select(AuditEvent).filter_by(action="password_changed")).scalar_one()
        assert NEW not in str(event.detail) and PASSWORD not in str(event.detail)
    client.post("/logout")
    assert auth.login(email="staff@a.example", password=NEW).status_code == 302


@pytest.mark.parametrize(
    ("current", "new", "confirm", "message"),
    [
        ("wrong-password-here", NEW, None, "not your current password"),
        (PASSWORD, "short-pass", None, "At least 12 characters"),
        (PASSWORD, "passwordpassword", None, "too easy to guess"),
        (PASSWORD, "1q2w3e4r5t6y", None, "too easy to guess"),
        (PASSWORD, "staff@a.example", None, "too easy to guess"),
        (PASSWORD, NEW, "plum-orchard-lantern-43", "do not match"),
    ],
)
def test_a_weak_or_unconfirmed_password_is_refused_and_nothing_changes(
    app, seed, client, auth, current, new, confirm, message
):
    auth.login(email="staff@a.example")
    refused = change(client, current, new, confirm)
    assert refused.status_code == 400 and message in refused.get_data(as_text=True)
    with app.app_context():
        user = db.session.execute(db.select(User).filter_by(email="staff@a.example")).scalar_one()
        assert verify_password(user.password_hash, PASSWORD)


def test_the_page_needs_a_login(client, seed):
    response = client.get("/account/password")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_new_users_need_a_strong_password_too(app, seed, client, auth):
    auth.login()
    refused = client.post(
        "/settings/users", data={"email": "new@a.example", "role": "staff", "password": "password1234"}
    )
    assert refused.status_code == 400 and "too easy to guess" in refused.get_data(as_text=True)
