"""Flask CLI: merchant create, user create, demo-data, reconcile (db upgrade comes from Flask-Migrate)."""

from __future__ import annotations

import sys

import click
from flask import Flask

from portal.config import is_test_credential
from portal.extensions import db
from portal.models import ROLES, Merchant, User
from portal.security import encrypt_secret, hash_password

# The sandbox server's published test accounts (sandbox/registry.py): Oen's is the sandbox's own, MyPay's and O'Pay's
# are the documents' test store and stage merchant. No credential at any real provider.
DEMO_MERCHANT = {
    "slug": "demo",
    "name": "示範商店 Demo Shop",
    "oen_merchant_id": "demo",
    "oen_token": "sandbox-oen-demo-token",  # nosec B105  # the sandbox's published test token, no real account
    "mypay_store_uid": "289151880002",
    "opay_merchant_id": "2000132",
    "opay_hash_key": "5294y06JbISpM5x9",
    "opay_hash_iv": "v77hoKGq4kWxNNIS",
}
DEMO_USERS = (
    ("admin@demo.example", "admin", "demo-admin-pass"),
    ("staff@demo.example", "staff", "demo-staff-pass"),
)


def upsert_merchant(slug: str, name: str, **provider) -> Merchant:
    """Create the merchant or update its name and the provider settings given."""
    merchant = db.session.execute(db.select(Merchant).filter_by(slug=slug)).scalar_one_or_none()
    if merchant is None:
        merchant = Merchant(slug=slug, name=name)
        db.session.add(merchant)
    merchant.name = name
    plain = {"oen_merchant_id", "mypay_store_uid", "opay_merchant_id"}
    for key, value in provider.items():
        if value is None:
            continue
        if key in plain:
            setattr(merchant, key, value)
        else:
            setattr(merchant, f"{key}_enc", encrypt_secret(value))
    return merchant


def create_user(email: str, merchant: Merchant, role: str, password: str) -> User:
    """A new user; raises ValueError for a bad role, a short password or an e-mail in use."""
    email = email.strip().lower()
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if len(password) < 10:
        raise ValueError("the password needs at least 10 characters")
    if db.session.execute(db.select(User).filter_by(email=email)).scalar_one_or_none():
        raise ValueError(f"{email} is already in use")
    user = User(email=email, merchant=merchant, role=role, password_hash=hash_password(password))
    db.session.add(user)
    return user


def ensure_demo_data() -> list[tuple[str, str, str]]:
    """The demo merchant and users (idempotent); returns the demo logins."""
    spec = dict(DEMO_MERCHANT)
    merchant = db.session.execute(db.select(Merchant).filter_by(slug=spec["slug"])).scalar_one_or_none()
    if merchant is None:
        merchant = upsert_merchant(spec.pop("slug"), spec.pop("name"), **spec)
        db.session.flush()
    for email, role, password in DEMO_USERS:
        if db.session.execute(db.select(User).filter_by(email=email)).scalar_one_or_none() is None:
            create_user(email, merchant, role, password)
    db.session.commit()
    return list(DEMO_USERS)


def register(app: Flask) -> None:
    """Attach the commands to the app."""

    @app.cli.group()
    def merchant():
        """Manage merchants."""

    @merchant.command("create")
    @click.argument("slug")
    @click.option("--name", required=True)
    @click.option("--oen-merchant-id")
    @click.option("--oen-token")
    @click.option("--mypay-store-uid")
    @click.option("--opay-merchant-id")
    @click.option("--opay-hash-key")
    @click.option("--opay-hash-iv")
    def merchant_create(slug, name, **provider):
        """Create a merchant (or update its settings)."""
        if app.config["PROVIDER_ENV"] == "production":
            for option in ("oen_token", "opay_hash_key", "opay_hash_iv"):
                if is_test_credential(provider.get(option)):
                    raise click.ClickException(
                        f"--{option.replace('_', '-')} is a public test value from a provider's document; "
                        "PROVIDER_ENV=production needs the merchant's own."
                    )
        upsert_merchant(slug, name, **provider)
        db.session.commit()
        click.echo(f"merchant {slug} saved")

    @app.cli.group()
    def user():
        """Manage users."""

    @user.command("create")
    @click.argument("email")
    @click.option("--merchant", "merchant_slug", required=True)
    @click.option("--role", type=click.Choice(ROLES), required=True)
    def user_create(email, merchant_slug, role):
        """Create a user; the password is read from standard input."""
        found = db.session.execute(db.select(Merchant).filter_by(slug=merchant_slug)).scalar_one_or_none()
        if found is None:
            raise click.ClickException(f"no merchant {merchant_slug}")
        password = sys.stdin.readline().rstrip("\r\n")
        try:
            create_user(email, found, role, password)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from exc
        db.session.commit()
        click.echo(f"user {email.strip().lower()} created")

    @app.cli.command("demo-data")
    def demo_data():
        """Add the demo merchant and users if missing, and print the logins."""
        logins = ensure_demo_data()
        click.echo("Demo logins (merchant 'demo'):")
        for email, role, password in logins:
            click.echo(f"  {role:6} {email} / {password}")

    @app.cli.command("reconcile")
    @click.option("--older-than", "older_than", type=int, default=0, help="only checkouts untouched this many minutes")
    def reconcile(older_than):
        """Ask the providers about every open checkout and apply what they say."""
        from portal.payments import reconcile_open_checkouts

        summary = reconcile_open_checkouts(older_than_minutes=older_than)
        click.echo(
            f"asked {summary.asked}, changed {summary.changed}, unchanged {summary.unchanged}, errors {summary.errors}"
        )
