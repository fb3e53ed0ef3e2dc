"""Built-in simulators of Oen Tech, MyPay and O'Pay (PROVIDER_ENV=sandbox only), built from the provider documents.

Mounted under /sandbox by the portal, or on its own: `flask --app portal.sandbox run --port 5001` (same database and
PORTAL_DATA_KEY as the portal, so that it knows the merchants' credentials).
"""

from __future__ import annotations

from flask import Blueprint, Flask, g

bp = Blueprint("sandbox", __name__, url_prefix="/sandbox")

BASE_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


@bp.before_request
def sandbox_csp() -> None:
    """The portal's policy, except that the simulated pages' forms redirect to the merchant's site (any origin)."""
    g.sandbox_csp = BASE_CSP + " http: https:"


def create_app(test_config: dict | None = None) -> Flask:
    """A minimal app with only the sandbox: settings as the portal reads them, the database, CSRF, this blueprint."""
    from pathlib import Path

    from portal import load_config
    from portal.extensions import csrf, db

    root = Path(__file__).resolve().parents[2]
    app = Flask(
        __name__,
        instance_path=str(root / "instance"),
        instance_relative_config=True,
        template_folder=str(root / "templates"),
        static_folder=str(root / "static"),
    )
    load_config(app, test_config)
    db.init_app(app)
    csrf.init_app(app)
    app.register_blueprint(bp)

    @app.after_request
    def security_headers(response):
        response.headers["Content-Security-Policy"] = getattr(g, "sandbox_csp", None) or BASE_CSP
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        return response

    return app


from portal.sandbox import console, models, mypay, oen, opay  # noqa: E402,F401  (register the routes and tables)
