"""Simulators of Oen Tech, MyPay and O'Pay, built from the provider documents: a separate party, like a real provider.

The sandbox is its own application, on its own origin, with its own database and its own registry of merchants and
the credentials it issued them (sandbox/registry.py). It imports nothing from the portal and knows nothing of it but
the address where callbacks go by default (SANDBOX_PORTAL_URL). Settings: sandbox/config.py.

    python -m sandbox                                   # http://127.0.0.1:5001 (loopback only: see __main__.py)
    flask --app sandbox run --host 127.0.0.1 --port 5001
    flask --app sandbox merchant add --oen-merchant-id shop --mypay-store-uid 123456789012
    flask --app sandbox accounts

Routes: the console at /, Oen under /oen/api/... and /oen/checkout/..., MyPay at /mypay/api/agent and /mypay/...,
O'Pay at /opay/WxAPI/... and /opay/wechat/..., and /healthz. The mail catcher (an SMTP server, sandbox/mail.py)
shows the mails it received at /mail.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Flask, abort, redirect, request, url_for
from sqlalchemy.exc import OperationalError

from sandbox.common import is_loopback

bp = Blueprint("sandbox", __name__)

# The provider pages' forms redirect or post to the merchant's site, on any origin: form-action allows http(s).
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'; form-action 'self' http: https:"
)


def create_app(test_config: dict | None = None) -> Flask:
    """The sandbox: settings (defaults, environment, test_config), its database and tables, the test accounts."""
    from sandbox import config as settings
    from sandbox import mail
    from sandbox.cli import register_commands
    from sandbox.extensions import csrf, db
    from sandbox.registry import seed_test_accounts

    package = Path(__file__).resolve().parent
    app = Flask(
        __name__,
        instance_path=str(settings.INSTANCE),
        template_folder=str(package / "templates"),
        static_folder=str(package / "static"),
    )
    app.config.from_mapping(settings.defaults())
    app.config.from_mapping(settings.from_environment())
    if test_config:
        app.config.from_mapping(test_config)
    settings.derive(app.config, Path(app.instance_path))

    @app.before_request  # before CSRF's own check, which would otherwise answer first
    def loopback_only():
        # The console has no login: even when started with a public --host by mistake, only this machine is served.
        if not is_loopback(request.remote_addr or ""):
            abort(403)

    db.init_app(app)
    csrf.init_app(app)
    app.register_blueprint(bp)
    register_commands(app)
    mail.start_with_first_request(app)

    @app.after_request
    def security_headers(response):
        response.headers.setdefault("Content-Security-Policy", CSP)  # a caught mail's HTML sets its own
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        if request.endpoint != "static":
            response.headers["Cache-Control"] = "no-store"
        return response

    with app.app_context():
        _create_tables(db)
        seed_test_accounts()
    return app


def _create_tables(db) -> None:
    """create_all (the sandbox has no migrations); a second process creating the same tables at once is harmless."""
    for attempt in range(3):
        try:
            db.create_all()
            return
        except OperationalError as exc:
            db.session.rollback()
            if "already exists" not in str(exc) or attempt == 2:
                raise


@bp.get("/healthz")
def healthz():
    """For whoever starts the sandbox and waits for it."""
    return "ok", 200, {"Content-Type": "text/plain; charset=utf-8"}


@bp.get("/favicon.ico")
def favicon():
    """Browsers ask for /favicon.ico on their own (the provider pages' own answers name no icon): the sandbox's."""
    return redirect(url_for("static", filename="favicon.svg"), code=301)


from sandbox import console, models, mypay, oen, opay  # noqa: E402,F401  (register the routes and tables)
