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

    @app.cli.group("webhook-endpoint")
    def webhook_endpoint():
        """Manage the merchants' webhook endpoints."""

    @webhook_endpoint.command("create")
    @click.option("--merchant", "merchant_slug", required=True)
    @click.option("--url", required=True)
    @click.option("--events", default="", help="comma-separated event types (default: every type)")
    @click.option("--description", default="")
    def webhook_endpoint_create(merchant_slug, url, events, description):
        """Add an endpoint; its signing secret is printed once, alone on the last line."""
        from portal import merchant_webhooks as hooks
        from portal.security import audit

        found = db.session.execute(db.select(Merchant).filter_by(slug=merchant_slug)).scalar_one_or_none()
        if found is None:
            raise click.ClickException(f"no merchant {merchant_slug}")
        url = url.strip()
        problem = hooks.url_problem(url)
        if problem:
            raise click.ClickException(hooks.URL_PROBLEMS_EN[problem])
        chosen = [e.strip() for e in events.split(",") if e.strip()]
        unknown = [e for e in chosen if e not in hooks.EVENT_TYPES]
        if unknown:
            raise click.ClickException(
                f"unknown event type {', '.join(unknown)}; known: {', '.join(hooks.EVENT_TYPES)}"
            )
        endpoint, secret = hooks.create_endpoint(found.id, url, chosen, description)
        audit(
            "webhook_endpoint_created", merchant_id=found.id, endpoint_id=endpoint.id, url=url, events=endpoint.events
        )
        db.session.commit()
        click.echo(f"webhook endpoint {endpoint.id} for {merchant_slug}: {url}")
        click.echo(f"events: {', '.join(endpoint.events) or 'all'}")
        click.echo("signing secret (shown once):")
        click.echo(secret)

    @app.cli.group("api-key")
    def api_key():
        """Manage the merchants' API keys."""

    @api_key.command("create")
    @click.option("--merchant", "merchant_slug", required=True)
    @click.option("--name", required=True)
    @click.option("--refunds", is_flag=True, help="the key may make refunds")
    def api_key_create(merchant_slug, name, refunds):
        """Create an API key; it is printed once, alone on the last line (only its hash is stored)."""
        from portal.api_keys import NAME_MAX_CHARS, create_key

        found = db.session.execute(db.select(Merchant).filter_by(slug=merchant_slug)).scalar_one_or_none()
        if found is None:
            raise click.ClickException(f"no merchant {merchant_slug}")
        if not name.strip() or len(name.strip()) > NAME_MAX_CHARS:
            raise click.ClickException(f"--name: 1 to {NAME_MAX_CHARS} characters")
        made = create_key(found, name, can_refund=refunds, user_id=None)
        refund_text = "yes" if refunds else "no"
        click.echo(f"API key {made.api_key.prefix}… ({name.strip()}) for {merchant_slug}, refunds: {refund_text}")
        click.echo("the key (shown once):")
        click.echo(made.secret)
