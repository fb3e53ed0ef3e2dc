"""Flask CLI: merchant create, user create, demo-data, reconcile (db upgrade comes from Flask-Migrate).

The work is done by the services the pages use too (portal.accounts, portal.payments); this module only parses.
"""

from __future__ import annotations

import sys

import click
from flask import Flask

from portal.accounts import PROVIDER_ID_FIELDS, create_user, ensure_demo_data, upsert_merchant
from portal.config import is_test_credential
from portal.extensions import db
from portal.models import ROLES, Merchant


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
        for column in PROVIDER_ID_FIELDS:
            value = provider.get(column)
            other = (
                value
                and db.session.execute(
                    db.select(Merchant.slug).where(getattr(Merchant, column) == value, Merchant.slug != slug)
                ).scalar()
            )
            if other:  # callbacks find the merchant by this id: one merchant each (a unique index too)
                raise click.ClickException(f"merchant {other} already uses --{column.replace('_', '-')} {value}")
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

    @app.cli.command("purge-callbacks")
    def purge_callbacks_command():
        """Remove refused and unconfirmed callbacks older than CALLBACK_RETENTION_DAYS."""
        from portal.payments.callbacks import purge_callbacks

        days = int(app.config["CALLBACK_RETENTION_DAYS"])
        click.echo(f"purged {purge_callbacks(days)} callbacks older than {days} days")

    @app.cli.command("reconcile")
    @click.option("--older-than", "older_than", type=int, default=0, help="only checkouts untouched this many minutes")
    def reconcile(older_than):
        """Ask the providers about every open checkout and apply what they say."""
        from portal.payments import reconcile_open_checkouts

        summary = reconcile_open_checkouts(older_than_minutes=older_than)
        click.echo(
            f"asked {summary.asked}, changed {summary.changed}, unchanged {summary.unchanged}, errors {summary.errors}"
        )

    @app.cli.command("worker")
    @click.option("--once", is_flag=True, help="run every job once and exit (for cron instead of a running worker)")
    def worker(once):
        """Send the outbox (mails) and run the scheduled jobs until stopped (Ctrl-C or SIGTERM)."""
        from portal import worker as background

        if once:
            ran = background.run_once(app)
            click.echo(f"ran: {', '.join(ran) or 'nothing (another worker holds every job)'}")
            return
        click.echo(
            f"worker {background.HOLDER}: outbox every {app.config['WORKER_POLL_S']} s, reconcile every "
            f"{app.config['RECONCILE_EVERY_MIN']} min, link expiry, reminders, purge; Ctrl-C stops"
        )
        background.run_forever(app)
