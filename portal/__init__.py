"""The merchant checkout portal: create_app() builds the Flask application."""

from __future__ import annotations

import functools
import logging
from datetime import timedelta

from babel import Locale
from flask import Flask, abort, g, has_request_context, render_template, request, session
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_wtf.csrf import CSRFError
from werkzeug.datastructures import ImmutableMultiDict
from werkzeug.middleware.proxy_fix import ProxyFix

from portal import config as settings
from portal.extensions import babel, check_connections_before_use, csrf, db, limiter, login_manager, migrate

LOCALES = ("zh_TW", "en")


def create_app(test_config: dict | None = None) -> Flask:
    """Build the app: settings, extensions, blueprints, error handlers, CLI."""
    app = Flask(
        __name__,
        instance_relative_config=True,
        template_folder="../templates",
        static_folder="../static",
    )
    load_config(app, test_config)
    if app.config["TRUSTED_PROXIES"]:
        # Believe X-Forwarded-For/-Proto/-Host from exactly that many proxies in front, and no client's own claims.
        hops = app.config["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)
    logging.basicConfig(level=app.config["LOG_LEVEL"], format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    register_extensions(app)
    register_blueprints(app)
    register_errorhandlers(app)
    register_security_headers(app)
    register_commands(app)
    register_template_helpers(app)
    from portal import mail  # noqa: F401  (the outbox's sender of mails)

    return app


def register_template_helpers(app: Flask) -> None:
    """Functions and filters the templates use."""
    from portal import filters, labels
    from portal.nav import nav_links

    app.jinja_env.globals["nav_links"] = nav_links
    app.jinja_env.globals["provider_env"] = app.config["PROVIDER_ENV"]
    app.jinja_env.globals["get_locale"] = get_locale
    app.jinja_env.globals["current_address"] = current_address
    filters.register(app)
    labels.register(app)


def current_address() -> str:
    """This page's path with its query, if any (the language links come back to it): not request.full_path, which
    ends in a bare "?" when there is no query."""
    query = request.query_string.decode("utf-8", errors="replace")
    return f"{request.path}?{query}" if query else request.path


def load_config(app: Flask, test_config: dict | None) -> None:
    """Embedded defaults, then instance/config.py, then the environment, then test_config."""
    app.config.from_mapping(settings.defaults())
    app.config.from_pyfile("config.py", silent=True)
    app.config.from_mapping(settings.from_environment())
    if test_config:
        app.config.from_mapping(test_config)
    settings.derive(app.config, app.instance_path)
    app.config["WTF_CSRF_TIME_LIMIT"] = None  # the token lives as long as the login session
    app.config["BABEL_DEFAULT_LOCALE"] = "zh_TW"
    app.config["BABEL_TRANSLATION_DIRECTORIES"] = "translations"
    app.config["RATELIMIT_HEADERS_ENABLED"] = False
    load_cookie_config(app)
    app.config["MAX_CONTENT_LENGTH"] = 1024 * 1024


def load_cookie_config(app: Flask) -> None:
    """The session cookie and Flask-Login's remember cookie: HttpOnly, SameSite; Secure and __Host- on HTTPS."""
    # The portal never sets a remember cookie; it is locked down too in case one ever is. __Host- needs path / and
    # no domain, so neither a subdomain nor a plain-HTTP page can plant a cookie the portal would trust.
    app.config["PERMANENT_SESSION_LIFETIME"] = timedelta(hours=app.config["SESSION_ABSOLUTE_HOURS"])
    app.config["REMEMBER_COOKIE_DURATION"] = timedelta(hours=app.config["SESSION_ABSOLUTE_HOURS"])
    https = app.config["PORTAL_BASE_URL"].startswith("https://")
    for kind in ("SESSION", "REMEMBER"):
        app.config[f"{kind}_COOKIE_HTTPONLY"] = True
        app.config[f"{kind}_COOKIE_SAMESITE"] = "Lax"
        app.config[f"{kind}_COOKIE_PATH"] = "/"
        app.config[f"{kind}_COOKIE_DOMAIN"] = None
        if https:
            app.config[f"{kind}_COOKIE_SECURE"] = True
    app.config["SESSION_COOKIE_NAME"] = "__Host-session" if https else "session"
    app.config["REMEMBER_COOKIE_NAME"] = "__Host-remember_token" if https else "remember_token"


@functools.cache
def _locale(name: str) -> Locale:
    return Locale.parse(name)  # parsing costs more than half a millisecond: once per language, not per request


def select_locale() -> Locale:
    """The interface language: the remembered choice, else the browser's, else zh-TW; English on the command line."""
    if not has_request_context():
        return _locale("en")
    chosen = session.get("lang")
    if chosen in LOCALES:
        return _locale(chosen)
    best = request.accept_languages.best_match(["zh_TW", "zh", "en"], default="zh_TW")
    return _locale(best.replace("zh", "zh_TW").replace("zh_TW_TW", "zh_TW"))


def register_extensions(app: Flask) -> None:
    """Bind the extensions created in extensions.py."""
    from portal import auth_session  # noqa: F401  (registers the user loader)

    db.init_app(app)
    with app.app_context():
        for engine in db.engines.values():
            check_connections_before_use(engine)
    migrate.init_app(app, db, directory=str(app.root_path + "/../migrations"))
    login_manager.init_app(app)
    csrf.init_app(app)
    limiter.init_app(app)
    babel.init_app(app, locale_selector=select_locale)


def register_blueprints(app: Flask) -> None:
    """One blueprint per feature (the simulated providers are a separate app, `sandbox/`, reached over HTTP)."""
    from portal.views import (
        auth,
        checkout,
        dashboard,
        links,
        main,
        orders,
        refunds,
        settings_views,
        transactions,
        webhooks,
    )

    for module in (main, auth, dashboard, orders, checkout, links, webhooks, transactions, refunds, settings_views):
        app.register_blueprint(module.bp)
    from portal.views import api, api_keys

    for module in (api, api_keys):
        app.register_blueprint(module.bp)

    from portal.views import webhook_endpoints

    app.register_blueprint(webhook_endpoints.bp)


def register_errorhandlers(app: Flask) -> None:
    """Friendly pages for errors; a 500 rolls the session back."""

    def render_error(code: int, message: str):
        if request.path.startswith("/api/"):
            from portal.views.api import http_problem  # the JSON API answers problem+json, never a page

            return http_problem(code, message)
        if customer_request():
            # A customer's page: the shop's layout (its name and contact when the link is known), no staff links.
            link = request.path == "/pay" or request.path.startswith("/pay/")
            page = render_template("checkout/error.html", code=code, message=message, shop=customer_shop(), link=link)
            return page, code
        return render_template("error.html", code=code, message=message), code

    @app.errorhandler(400)
    def bad_request(_e):
        return render_error(400, _("The request could not be understood."))

    @app.errorhandler(CSRFError)
    def csrf_error(_e):
        return render_error(400, _("The form has expired or was not sent from this site. Please reload and try again."))

    @app.errorhandler(403)
    def forbidden(_e):
        return render_error(403, _("You do not have permission to do this."))

    @app.errorhandler(404)
    def not_found(_e):
        if request.path == "/pay" or request.path.startswith("/pay/"):
            return render_error(
                404,
                _(
                    "We could not find this payment link. Please check that the whole link was copied, "
                    "or ask the shop to send it again."
                ),
            )
        return render_error(404, _("The page you asked for does not exist."))

    @app.errorhandler(405)
    def method_not_allowed(_e):
        return render_error(405, _("This address does not accept that kind of request."))

    @app.errorhandler(413)
    def too_large(_e):
        return render_error(413, _("What was sent is too large."))

    @app.errorhandler(429)
    def too_many(_e):
        return render_error(429, _("Too many attempts. Please wait a few minutes and try again."))

    @app.errorhandler(500)
    def server_error(_e):
        db.session.rollback()
        return render_error(500, _("Something went wrong on our side. Nothing was changed; please try again."))


def customer_request() -> bool:
    """Whether the page is one a customer reaches: a payment link (known or not), or any address while signed out
    that is not the staff's own (a mistyped link must not lead a customer to the staff login)."""
    from flask_login import current_user

    path = request.path
    if path == "/pay" or path.startswith("/pay/"):
        return True
    staff_paths = (
        "/login",
        "/logout",
        "/account",
        "/orders",
        "/settings",
        "/transactions",
        "/refunds",
        "/webhooks",
        "/static",
    )
    return not current_user.is_authenticated and not path.startswith(staff_paths) and path != "/"


def customer_shop():
    """The merchant behind the customer link this request looked up, if any."""
    found = g.get("link") or g.get("link_order")
    merchant = getattr(found, "merchant", None)
    if merchant is None:
        merchant = getattr(getattr(found, "order", None), "merchant", None)
    return merchant


def register_security_headers(app: Flask) -> None:
    """Headers on every response: CSP without unsafe-inline, no framing, no sniffing, HSTS on HTTPS."""

    @app.before_request
    def refuse_nul_bytes():
        # PostgreSQL refuses NUL in any text value (a 500 wherever one reached a query) and no input has a use for it:
        # dropped from query parameters (filters and paging, where odd values are ignored), refused in paths. Forms
        # refuse control characters field by field (portal.forms). Callbacks are stored as received (NUL replaced).
        if request.endpoint == "webhooks.receive":
            return None
        args = list(request.args.items(multi=True))
        if any("\x00" in key + value for key, value in args):
            request.args = ImmutableMultiDict([(k.replace("\x00", ""), v.replace("\x00", "")) for k, v in args])
        if any("\x00" in str(value) for value in (request.view_args or {}).values()):
            abort(400)
        return None

    @app.after_request
    def set_headers(response):
        # A page whose form leads on to a provider (the customer's pay button, answered by a redirect to the
        # provider's origin) names that origin in form-action: browsers check redirects of a form's POST too.
        form_action = " ".join(["'self'", *getattr(g, "form_action_origins", ())])
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            f"object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action {form_action}",
        )
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if request.endpoint != "static":
            # Every page but the static files carries a merchant's or a customer's data, or says whether a link exists.
            response.headers["Cache-Control"] = "no-store"
        if request.is_secure or app.config["PORTAL_BASE_URL"].startswith("https://"):
            response.headers.setdefault("Strict-Transport-Security", "max-age=63072000; includeSubDomains")
        return response


def register_commands(app: Flask) -> None:
    """The Flask CLI of DESIGN.md."""
    from portal.cli import register

    register(app)
