"""The sandbox's commands: `flask --app sandbox merchant add ...` and `flask --app sandbox accounts`.

They print the credentials the sandbox issued (it is a simulator's own command line, like a provider's back office
showing a merchant its keys); nothing here logs them.
"""

from __future__ import annotations

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext

from sandbox import registry, settings

merchant_cli = AppGroup("merchant", help="Register merchants with the simulated providers.")


@merchant_cli.command("add")
@click.option("--oen-merchant-id", help="Oen merchantId (the merchant's sub-domain)")
@click.option("--oen-token", help="the CRM bearer token to issue (default: a new random one, or the current one)")
@click.option(
    "--oen-webhook-url", help="where Oen posts this merchant's webhooks (default {SANDBOX_PORTAL_URL}/webhooks/oen)"
)
@click.option("--mypay-store-uid", help="MyPay store_uid under the sandbox's agent")
@click.option(
    "--mypay-callback-url",
    help="where MyPay posts this store's callbacks (default {SANDBOX_PORTAL_URL}/webhooks/mypay)",
)
@click.option("--opay-merchant-id", help="O'Pay MerchantID")
@click.option("--opay-hash-key", help="the HashKey to issue, 16 characters (default: random)")
@click.option("--opay-hash-iv", help="the HashIV to issue, 16 characters (default: random)")
def merchant_add(
    oen_merchant_id, oen_token, oen_webhook_url, mypay_store_uid, mypay_callback_url, opay_merchant_id, opay_hash_key,
    opay_hash_iv,
):  # fmt: skip
    """Register (or update) a merchant with one or more providers and print what was issued."""
    if not (oen_merchant_id or mypay_store_uid or opay_merchant_id):
        raise click.UsageError("give --oen-merchant-id, --mypay-store-uid and/or --opay-merchant-id")
    if (oen_token or oen_webhook_url) and not oen_merchant_id:
        raise click.UsageError("--oen-token and --oen-webhook-url need --oen-merchant-id")
    if mypay_callback_url and not mypay_store_uid:
        raise click.UsageError("--mypay-callback-url needs --mypay-store-uid")
    if (opay_hash_key or opay_hash_iv) and not opay_merchant_id:
        raise click.UsageError("--opay-hash-key and --opay-hash-iv need --opay-merchant-id")
    if bool(opay_hash_key) != bool(opay_hash_iv):
        raise click.UsageError("give both --opay-hash-key and --opay-hash-iv, or neither")
    try:
        if oen_merchant_id:
            token = registry.register_oen_merchant(oen_merchant_id, oen_token, oen_webhook_url)
            url = settings.callback_url("oen", oen_webhook_url)
            click.echo(f"oen    merchantId={oen_merchant_id} token={token} webhook={url}")
        if mypay_store_uid:
            registry.register_mypay_store(mypay_store_uid, mypay_callback_url)
            agent = current_app.config["SANDBOX_MYPAY_AGENT_UID"]
            url = settings.callback_url("mypay", mypay_callback_url)
            click.echo(f"mypay  store_uid={mypay_store_uid} agent_uid={agent} callback={url}")
        if opay_merchant_id:
            key, iv = registry.register_opay_merchant(opay_merchant_id, opay_hash_key, opay_hash_iv)
            click.echo(f"opay   MerchantID={opay_merchant_id} HashKey={key} HashIV={iv}")
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


@click.command("accounts")
@with_appcontext
def accounts_command():
    """List the registered merchants and their credentials (the MyPay agent's key is in the sandbox's config)."""
    found = registry.accounts()
    config = current_app.config
    click.echo(
        f"MyPay agent_uid={config['SANDBOX_MYPAY_AGENT_UID']}; O'Pay platform {config['SANDBOX_OPAY_PLATFORM_ID']}"
    )
    for row in found["oen"]:
        url = settings.callback_url("oen", row.webhook_url)
        click.echo(f"oen    merchantId={row.merchant_id} token={row.token} webhook={url}")
    for row in found["mypay"]:
        click.echo(f"mypay  store_uid={row.store_uid} callback={settings.callback_url('mypay', row.callback_url)}")
    for row in found["opay"]:
        click.echo(f"opay   MerchantID={row.merchant_id} HashKey={row.hash_key} HashIV={row.hash_iv}")


def register_commands(app: Flask) -> None:
    app.cli.add_command(merchant_cli)
    app.cli.add_command(accounts_command)
