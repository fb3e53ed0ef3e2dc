"""The console at /: registered accounts, journal, callbacks, and the switches (faults, latency, Oen card numbers);
the mails the mail catcher received at /mail.

It needs no login: the sandbox listens on the loopback interface only (see __main__.py).
"""

from __future__ import annotations

from datetime import UTC, datetime

from flask import abort, current_app, flash, jsonify, redirect, render_template, request, url_for

from sandbox import bp, callbacks, faults, registry, settings
from sandbox import mail as mail_module
from sandbox.common import TAIPEI, as_int
from sandbox.extensions import db
from sandbox.models import (
    CaughtMail,
    SandboxCallback,
    SandboxExchange,
    SandboxMypayOrder,
    SandboxOenCheckout,
    SandboxOpayTrade,
)

FAULT_LABELS = {
    "fail_next": "下一次 API 呼叫回 HTTP 500 (不處理)",
    "fail_after_next": "下一次 API 呼叫照常處理後回 HTTP 500",
    "hang_next": "下一次 API 呼叫拖過逾時再處理",
    "drop_next_callback": "下一個回呼不送出",
}


@bp.get("/")
def console():
    """Every request received and callback sent, newest first."""
    provider = request.args.get("provider")
    query = db.select(SandboxExchange).order_by(SandboxExchange.id.desc()).limit(200)
    if provider in faults.PROVIDERS:
        query = query.where(SandboxExchange.provider == provider)
    exchanges = list(db.session.execute(query).scalars())
    recent = db.select(SandboxCallback).order_by(SandboxCallback.id.desc()).limit(50)
    return render_template(
        "console.html",
        provider=provider,
        providers=faults.PROVIDERS,
        exchanges=exchanges,
        callbacks=list(db.session.execute(recent).scalars()),
        armed=faults.pending(),
        fault_labels=FAULT_LABELS,
        latency={name: settings.latency_ms(name) for name in faults.PROVIDERS},
        full_card_number=settings.oen_full_card_number(),
        oen_checkouts=_latest(SandboxOenCheckout, SandboxOenCheckout.created_at),
        mypay_orders=_latest(SandboxMypayOrder, SandboxMypayOrder.uid),
        opay_trades=_latest(SandboxOpayTrade, SandboxOpayTrade.id),
        accounts=registry.accounts(),
        shown=registry.shown,
        default_callback={name: settings.callback_url(name) for name in ("oen", "mypay")},
        agent_uid=current_app.config["SANDBOX_MYPAY_AGENT_UID"],
        platform_id=current_app.config["SANDBOX_OPAY_PLATFORM_ID"],
        taipei=_taipei,
    )


def _latest(model, order_column, count: int = 20):
    return list(db.session.execute(db.select(model).order_by(order_column.desc()).limit(count)).scalars())


def _back():
    return redirect(url_for("sandbox.console", provider=request.form.get("back") or None), 303)


@bp.post("/console/fault")
def console_fault():
    """Arm or clear a fault switch."""
    provider, kind = request.form.get("provider", ""), request.form.get("kind", "")
    if provider not in faults.PROVIDERS:
        abort(400)
    if kind == "clear":
        faults.clear(provider)
        flash(f"{provider}: 所有故障開關已關閉")
    elif kind in faults.KINDS:
        count = as_int(request.form.get("count", "1")) or 1
        faults.set(provider, kind, count)
        flash(f"{provider}: {FAULT_LABELS[kind]} × {count}")
    else:
        abort(400)
    return _back()


@bp.post("/console/latency")
def console_latency():
    """Set a provider's latency in milliseconds (empty: back to the config)."""
    provider = request.form.get("provider", "")
    if provider not in faults.PROVIDERS:
        abort(400)
    raw = request.form.get("ms", "").strip()
    ms = as_int(raw)
    if raw and (ms is None or ms < 0):
        abort(400)
    settings.set_latency(provider, ms if raw else None)
    flash(f"{provider}: latency {settings.latency_ms(provider)} ms")
    return _back()


@bp.post("/console/oen-card-number")
def console_card_number():
    """Whether Oen answers the whole card number in cardNum."""
    settings.set_oen_full_card_number(request.form.get("on") == "1")
    flash("Oen cardNum: " + ("完整卡號" if settings.oen_full_card_number() else "遮罩卡號"))
    return _back()


@bp.post("/console/callbacks/<int:callback_id>/resend")
def console_resend(callback_id: int):
    """Send a stored callback once more."""
    if db.session.get(SandboxCallback, callback_id) is None:
        abort(404)
    callbacks.resend(callback_id)
    flash(f"callback #{callback_id} resent")
    return _back()


# ---------------------------------------------------------------- caught mails (the SMTP catcher: sandbox/mail.py)


def _taipei(moment: datetime) -> datetime:
    """A stored (naive UTC) time on Taiwan's clock."""
    return moment.replace(tzinfo=UTC).astimezone(TAIPEI)


def _mails(to: str | None = None, count: int = 200) -> list[CaughtMail]:
    mails = db.session.execute(db.select(CaughtMail).order_by(CaughtMail.id.desc()).limit(count)).scalars()
    if to:
        return [m for m in mails if to.lower() in (address.lower() for address in m.rcpt_tos)]
    return list(mails)


@bp.get("/mail")
def mail_list():
    """The mails the catcher received, newest first."""
    running = current_app.extensions.get("sandbox_mail")
    port = running.port if running else current_app.config.get("SANDBOX_SMTP_PORT")
    return render_template("mail.html", mails=_mails(), mail=None, taipei=_taipei, smtp_port=port)


@bp.get("/mail/<int:mail_id>")
def mail_show(mail_id: int):
    """One caught mail: headers, text, the HTML in a sandboxed frame without scripts, and the links found in it."""
    mail = db.session.get(CaughtMail, mail_id)
    if mail is None:
        abort(404)
    headers = list(mail_module.parse(mail.raw.encode("utf-8")).items()) if mail.raw else []
    return render_template(
        "mail.html",
        mail=mail,
        headers=headers,
        links=mail_module.links(mail.html, mail.text),
        taipei=_taipei,
    )


# The caught mail's HTML, shown in the mail page's sandboxed frame: its own inline styles apply (as in a mail program),
# nothing else loads (no script, no remote image, no form), and only the sandbox's own pages may frame it.
MAIL_HTML_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'self'; form-action 'none'; "
    "frame-ancestors 'self'; sandbox allow-popups allow-popups-to-escape-sandbox"
)


@bp.get("/mail/<int:mail_id>/html")
def mail_html(mail_id: int):
    """One caught mail's HTML part, for the frame on its page (links open in a new tab)."""
    mail = db.session.get(CaughtMail, mail_id)
    if mail is None or not mail.html:
        abort(404)
    response = current_app.response_class('<base target="_blank">' + mail.html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = MAIL_HTML_CSP
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    return response


@bp.post("/mail/delete")
def mail_delete():
    """Delete every caught mail."""
    deleted = db.session.execute(db.delete(CaughtMail)).rowcount
    db.session.commit()
    flash(f"已刪除 {deleted} 封郵件 · {deleted} mails deleted")
    return redirect(url_for("sandbox.mail_list"), 303)


@bp.get("/mail/api/messages")
def mail_api():
    """The caught mails as JSON, newest first (`?to=address` keeps those sent to it), for tests and tools."""
    return jsonify(
        [
            {
                "id": m.id,
                "from": m.mail_from,
                "to": m.rcpt_tos,
                "subject": m.subject,
                "message_id": m.message_id,
                "text": m.text,
                "html": m.html,
                "received_at": m.received_at.replace(tzinfo=UTC).isoformat(),
            }
            for m in _mails(request.args.get("to"))
        ]
    )
