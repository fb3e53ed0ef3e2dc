"""The JSON API for the merchant's systems (/api/v1): API keys, idempotency keys, problem+json errors, OpenAPI.

Every route: `Authorization: Bearer <key>` (cookies are never read, and there is no CSRF token: no browser session is
believed here), rate-limited per key, JSON in and out, errors as application/problem+json (RFC 9457) in English, or
in Traditional Chinese when Accept-Language asks for it. The bodies are portal.api_schemas' pydantic models: requests
are checked against them (strict: no strings for numbers, no unknown fields), then against the same forms and money
rules as the pages; the OpenAPI document is generated from the same models (spectree).

A key revoked while a request is under way: the key is checked when the request starts and again, for a POST with an
Idempotency-Key, in the transaction that claims the key; work already started after that finishes (the key was
valid when it began).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
from datetime import datetime

from flask import Blueprint, Response, current_app, g, render_template, request
from flask_babel import force_locale
from flask_babel import gettext as _
from limits import parse as parse_limit
from pydantic import BaseModel, Field, ValidationError
from spectree import Response as SpecResponse
from spectree import SecurityScheme, SecuritySchemeData, SpecTree
from sqlalchemy import and_, or_
from sqlalchemy.orm import selectinload
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import RequestEntityTooLarge

from portal import api_keys, idempotency
from portal.api_schemas import (
    CheckoutCreate,
    OrderCreate,
    OrderCreated,
    OrderList,
    OrderOut,
    OrderQuery,
    Problem,
    RefundCreate,
    RefundOut,
    TransactionsOut,
)
from portal.extensions import csrf, db, limiter, login_manager
from portal.forms import OrderForm, RefundForm
from portal.models import ApiKey, Merchant, Order
from portal.order_json import iso, order_payload
from portal.orders import OrderFilter, create_order, filtered_orders
from portal.overview import forget_live, order_rows
from portal.payments.attempts import CheckoutError, provider_choices
from portal.payments.links import CHOICE, open_link
from portal.refunds import RefundRefused, new_idempotency_key, plan_refund, refund_by_key, submit_refund

bp = Blueprint("api", __name__, url_prefix="/api/v1")
csrf.exempt(bp)

RATE_LIMIT = "600/minute"  # per key; API_RATE_LIMIT overrides
PROBLEM_JSON = "application/problem+json"
LOCALES = ("en", "zh_TW")


class IdempotencyHeader(BaseModel):
    idempotency_key: str | None = Field(
        None,
        alias="Idempotency-Key",
        max_length=idempotency.KEY_MAX_CHARS,
        description="Any unique text (a UUID): the same request with it within 24 hours gets the first answer again.",
    )


spec = SpecTree(
    "flask",
    mode="strict",
    annotations=False,
    title="Checkout Portal API",
    version="1",
    description=(
        "The merchant's systems: create orders with their customer links, read and list them, refund, read the "
        "providers' live transactions. Amounts are whole TWD. Errors are application/problem+json (RFC 9457)."
    ),
    path="api/v1/_spec",  # spectree's own pages are not served; /api/v1/openapi.json and /api/v1/docs are
    page_templates={},
    security_schemes=[SecurityScheme(name="bearer", data=SecuritySchemeData(type="http", scheme="bearer"))],
    security={"bearer": []},
    validation_error_model=Problem,
    validation_error_status=422,
    naming_strategy=lambda model: model.__name__,
    nested_naming_strategy=lambda _parent, child: child,
)


def _problems(*codes: int) -> dict:
    return {f"HTTP_{code}": Problem for code in codes}


# ---------------------------------------------------------------- answers


def api_locale() -> str:
    best = request.accept_languages.best_match(["en", "zh_TW", "zh", "zh_Hant_TW", "zh_Hant"], default="en")
    return "en" if best == "en" else "zh_TW"


def problem(status: int, title: str, detail: str | None = None, *, kind: str = "", errors=None, headers=None, **extra):
    """An application/problem+json answer."""
    body = {
        "type": f"{request.host_url.rstrip('/')}/api/v1/docs#problem-{kind}" if kind else "about:blank",
        "title": str(title),
        "status": status,
        "detail": str(detail) if detail is not None else None,
        "errors": [{"field": field, "message": str(message)} for field, message in (errors or [])],
        **extra,
    }
    return Response(json.dumps(body, ensure_ascii=False), status=status, mimetype=PROBLEM_JSON, headers=headers)


def http_problem(code: int, message: str) -> Response:
    """The app's error pages for an /api/ address: a problem+json of the same status (portal/__init__.py)."""
    with force_locale(api_locale()):
        titles = {
            400: _("Bad request"),
            404: _("Not found"),
            405: _("Method not allowed"),
            413: _("Body too large"),
            429: _("Too many requests"),
            500: _("Server error"),
        }
        details = {
            400: _("The request could not be understood."),
            404: _("There is no such address in the API."),
            405: _("This address does not take this method."),
            413: _("The request body is larger than 1 MiB."),
            429: _("Too many requests; wait a minute and try again."),
            500: _("Something went wrong on our side; nothing was changed. Please try again."),
        }
        return problem(code, titles.get(code, _("Error")), details.get(code, message))


def answer(model: type[BaseModel], body: dict, status: int = 200) -> Response:
    model.model_validate(body)  # the answer keeps the documented schema
    return Response(json.dumps(body, ensure_ascii=False), status=status, mimetype="application/json")


def unauthorized(detail: str, *, sent: bool = True) -> Response:
    challenge = 'Bearer realm="api", error="invalid_token"' if sent else 'Bearer realm="api"'
    return problem(401, _("Unauthorized"), detail, kind="unauthorized", headers={"WWW-Authenticate": challenge})


# ---------------------------------------------------------------- request bodies

FIELD_MESSAGES = {
    "missing": lambda _ctx: _("This field is required."),
    "extra_forbidden": lambda _ctx: _("Unknown field."),
    "int_type": lambda _ctx: _("Must be a whole number (a JSON number, not text)."),
    "int_from_float": lambda _ctx: _("Must be a whole number (a JSON number, not text)."),
    "string_type": lambda _ctx: _("Must be text."),
    "bool_type": lambda _ctx: _("Must be true or false."),
    "list_type": lambda _ctx: _("Must be a list."),
    "model_type": lambda _ctx: _("Must be an object."),
    "dict_type": lambda _ctx: _("Must be an object."),
    "literal_error": lambda ctx: _("Must be one of: %(expected)s.", expected=ctx.get("expected", "")),
    "too_short": lambda ctx: _("At least %(min)s.", min=ctx.get("min_length", "")),
    "too_long": lambda ctx: _("At most %(max)s.", max=ctx.get("max_length", "")),
}


class BadBody(Exception):
    def __init__(self, response: Response):
        super().__init__(response.status)
        self.response = response


def field_path(loc) -> str:
    return ".".join(str(part) for part in loc)


def parse_body(model: type[BaseModel], raw: bytes):
    """The body as the model, or BadBody with the problem: 400 not a JSON object, 422 per field."""
    try:
        return model.model_validate_json(raw or b"", strict=True)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        if any(e["type"] == "json_invalid" for e in errors):
            raise BadBody(
                problem(400, _("Invalid JSON"), _("The body is not valid JSON."), kind="invalid-json")
            ) from None
        if any(not e["loc"] for e in errors):
            raise BadBody(
                problem(400, _("Invalid JSON"), _("The body must be a JSON object."), kind="invalid-json")
            ) from None
        fields = []
        for error in errors:
            message = FIELD_MESSAGES.get(error["type"])
            fields.append((field_path(error["loc"]), message(error.get("ctx") or {}) if message else error["msg"]))
        raise BadBody(invalid(fields)) from None


def invalid(errors) -> Response:
    return problem(
        422,
        _("Invalid request"),
        _("Some fields were not accepted; see errors."),
        kind="validation",
        errors=errors,
    )


def form_errors(form, mapping: dict[str, str]) -> list[tuple[str, str]]:
    """A validated form's messages, each under the body's field name."""
    found = []
    for name, field in form._fields.items():
        for message in field.errors if isinstance(field.errors, list) else []:
            if isinstance(message, str) or not isinstance(message, (dict, list)):
                found.append((mapping.get(name, name), message))
    return found


INVOICE_PARTS = ("kind", "carrier", "tax_id", "title", "donation_code")  # the form's invoice_<part> fields


def order_formdata(body: OrderCreate) -> MultiDict:
    """The body as the order form's fields, so the form's rules (one source) check it."""
    data = [
        ("customer_name", body.customer_name),
        ("customer_email", body.customer_email),
        ("shipping_fee", str(body.shipping_fee)),
        ("note", body.note),
    ]
    if body.invoice is not None:
        data += [(f"invoice_{name}", getattr(body.invoice, name)) for name in INVOICE_PARTS]
    for i, item in enumerate(body.items):
        data += [
            (f"items-{i}-sku", item.sku),
            (f"items-{i}-name", item.name),
            (f"items-{i}-unit_price", str(item.unit_price)),
            (f"items-{i}-quantity", str(item.quantity)),
        ]
    for i, voucher in enumerate(body.vouchers):
        data += [
            (f"vouchers-{i}-kind", voucher.kind),
            (f"vouchers-{i}-product_id", voucher.product_id),
            (f"vouchers-{i}-serial_number", voucher.serial_number),
            (f"vouchers-{i}-name", voucher.name),
            (f"vouchers-{i}-amount", str(voucher.amount)),
        ]
    return MultiDict(data)


def order_form_errors(form: OrderForm) -> list[tuple[str, str]]:
    errors = []
    for name in ("customer_name", "customer_email", "shipping_fee", "note"):
        errors += [(name, message) for message in form[name].errors]
    for name in INVOICE_PARTS:
        errors += [(f"invoice.{name}", message) for message in form[f"invoice_{name}"].errors]
    for group in ("items", "vouchers"):
        rows = form[group]
        for i, entry in enumerate(rows.entries):
            for field_name, field in entry.form._fields.items():
                errors += [(f"{group}.{i}.{field_name}", message) for message in field.errors]
        errors += [(group, message) for message in rows.errors if not isinstance(message, (dict, list))]
    return errors


# ---------------------------------------------------------------- the guard around every route


def current_key() -> ApiKey:
    return g.api_key


def _authenticate() -> ApiKey | Response:
    header = request.headers.get("Authorization", "")
    scheme, _sep, token = header.partition(" ")
    if not header:
        return unauthorized(_("Send your API key as Authorization: Bearer <key>."), sent=False)
    if scheme.lower() != "bearer":
        return unauthorized(_("Send your API key as Authorization: Bearer <key>."))
    key = api_keys.authenticate(token.strip())
    if key is None:
        return unauthorized(_("This API key is not valid or has been revoked."))
    return key


def _rate_limited(key: ApiKey) -> Response | None:
    if not limiter.enabled or not current_app.config.get("RATELIMIT_ENABLED", True):
        return None
    item = parse_limit(current_app.config.get("API_RATE_LIMIT") or RATE_LIMIT)
    if limiter.limiter.hit(item, "api-key", str(key.id)):
        return None
    return problem(
        429,
        _("Too many requests"),
        _("This API key sent too many requests; wait a minute and try again."),
        kind="rate-limited",
        headers={"Retry-After": str(item.get_expiry())},
    )


def _run_idempotent(key: ApiKey, view, args, kwargs) -> Response:
    header = request.headers.get("Idempotency-Key")
    if header is None:
        return view(*args, **kwargs)
    if not idempotency.valid_key(header):
        return invalid([("Idempotency-Key", _("1 to 255 printable ASCII characters."))])
    fingerprint = idempotency.fingerprint(request.method, request.path, request.get_data(cache=True))
    claim = idempotency.begin(key.id, header, fingerprint, still_valid=lambda: api_keys.is_active(key.id))
    if claim.outcome == "revoked":
        return unauthorized(_("This API key is not valid or has been revoked."))
    if claim.outcome == "mismatch":
        return problem(
            422,
            _("Idempotency key reused"),
            _("This Idempotency-Key was used with another request; use a new key for a new request."),
            kind="idempotency-mismatch",
        )
    if claim.outcome == "busy":
        return problem(
            409,
            _("Request in progress"),
            _("A request with this Idempotency-Key is still being answered; retry shortly."),
            kind="idempotency-in-progress",
            headers={"Retry-After": "1"},
        )
    if claim.outcome == "replay":
        status = claim.status or 200
        mimetype = PROBLEM_JSON if status >= 400 else "application/json"
        return Response(claim.body or "", status=status, mimetype=mimetype, headers={"Idempotent-Replayed": "true"})
    g.idempotency_key = header
    try:
        response = view(*args, **kwargs)
    except BaseException:
        db.session.rollback()
        idempotency.release(claim.record_id)
        raise
    idempotency.finish(claim.record_id, response.status_code, response.get_data(as_text=True))
    return response


def api_route(rule: str, methods: tuple[str, ...], *, body=None, query=None, resp: dict, refunds: bool = False):
    """Register an API route: the key, the rate limit, the permission, the body size, idempotency; documented."""

    def decorate(view):
        @functools.wraps(view)
        def guarded(*args, **kwargs):
            with force_locale(api_locale()):
                g._login_user = login_manager.anonymous_user()  # never the browser session's user
                key = _authenticate()
                if isinstance(key, Response):
                    return key
                g.api_key = key
                limited = _rate_limited(key)
                if limited is not None:
                    return limited
                api_keys.touch(key)
                if refunds and not key.can_refund:
                    return problem(
                        403,
                        _("Forbidden"),
                        _("This API key may not make refunds; an admin can create one that may."),
                        kind="forbidden",
                    )
                if request.method == "POST":
                    try:
                        request.get_data(cache=True)
                    except RequestEntityTooLarge:
                        return http_problem(413, "")
                    if request.mimetype and request.mimetype != "application/json":
                        return problem(
                            415,
                            _("Unsupported media type"),
                            _("Send the body as application/json."),
                            kind="media-type",
                        )
                    return _run_idempotent(key, _catching(view), args, kwargs)
                return _catching(view)(*args, **kwargs)

        headers = IdempotencyHeader if "POST" in methods else None
        documented = spec.validate(
            json=body, query=query, headers=headers, resp=SpecResponse(**resp), tags=["orders"], skip_validation=True
        )(guarded)
        bp.add_url_rule(rule, view_func=documented, methods=list(methods))
        return documented

    return decorate


def _catching(view):
    @functools.wraps(view)
    def run(*args, **kwargs):
        try:
            return view(*args, **kwargs)
        except BadBody as exc:
            db.session.rollback()
            return exc.response

    return run


def scoped_order(order_id: int, *, lock: bool = False) -> Order:
    """The key's merchant's order, else a 404 problem."""
    query = db.select(Order).filter_by(id=order_id, merchant_id=current_key().merchant_id)
    order = db.session.execute(query).scalar_one_or_none()
    if order is None:
        raise BadBody(problem(404, _("Not found"), _("No order with this id."), kind="not-found"))
    return order


# ---------------------------------------------------------------- routes


@api_route(
    "/orders",
    ("POST",),
    body=OrderCreate,
    resp={"HTTP_201": OrderCreated, **_problems(400, 401, 409, 413, 415, 422, 429)},
)
def create():
    """Create an order

    The same rules as the order form. With `provider` the customer link is made at once (`checkout.url`).
    """
    body = parse_body(OrderCreate, request.get_data(cache=True))
    form = OrderForm(formdata=order_formdata(body), meta={"csrf": False})
    if not form.validate():
        return invalid(order_form_errors(form))
    key = current_key()
    if body.provider and body.provider != CHOICE:
        # Checked before anything is saved, so an order the provider cannot take is not left behind.
        merchant = key_merchant(key)
        candidate = _Candidate(merchant=merchant, payable=form.totals.payable)
        allowed = {name: (ok, why) for name, ok, why in provider_choices(candidate)}
        if not allowed.get(body.provider, (False, ""))[0]:
            return invalid([("provider", allowed.get(body.provider, (False, _("Unknown provider.")))[1])])
    order = create_order(form.draft(), merchant_id=key.merchant_id, user_id=None)
    link_error = None
    if body.provider:
        try:
            open_link(order, body.provider, None, request.remote_addr or "")
        except CheckoutError as exc:
            # The order exists: answered (and kept for the Idempotency-Key) as created, with why it has no link yet,
            # so a retry of this request never makes a second order.
            link_error = {
                "title": _("The provider refused the link"),
                "detail": _("The order was created but its link could not be made: %(why)s", why=str(exc)),
            }
    order = db.session.get(Order, order.id, populate_existing=True)
    body_out = order_payload(order)
    if link_error:
        body_out["checkout_error"] = {name: str(text) for name, text in link_error.items()}
    return answer(OrderCreated, body_out, 201)


class _Candidate:
    """What provider_choices reads of an order (its merchant and payable), before the order exists."""

    def __init__(self, merchant, payable: int):
        self.merchant = merchant
        self.payable = payable


def key_merchant(key: ApiKey) -> Merchant:
    return db.session.get(Merchant, key.merchant_id)


@api_route("/orders/<int:order_id>", ("GET",), resp={"HTTP_200": OrderOut, **_problems(401, 404, 429)})
def read(order_id: int):
    """Read an order"""
    return answer(OrderOut, order_payload(scoped_order(order_id)))


def _encode_cursor(order: Order) -> str:
    raw = json.dumps([order.created_at.isoformat(), order.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(text: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        created, order_id = json.loads(raw)
        if not isinstance(order_id, int) or isinstance(order_id, bool) or not isinstance(created, str):
            raise ValueError(text)
        return datetime.fromisoformat(created), order_id
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError) as exc:
        raise BadBody(invalid([("cursor", _("This cursor is not one the API gave."))])) from exc


@api_route("/orders", ("GET",), query=OrderQuery, resp={"HTTP_200": OrderList, **_problems(401, 422, 429)})
def index():
    """List orders

    Newest first, with the order list's filters; `next_cursor` leads to the next (older) page.
    """
    try:
        params = OrderQuery.model_validate(request.args.to_dict())
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        fields = []
        for error in errors:
            message = FIELD_MESSAGES.get(error["type"])
            fields.append((field_path(error["loc"]), message(error.get("ctx") or {}) if message else error["msg"]))
        return invalid(fields)
    flt = OrderFilter.from_args(request.args)  # the order list's own reading of its filters
    if flt.errors:
        return invalid(list(flt.errors))
    query = filtered_orders(current_key().merchant_id, flt)
    query = query.options(selectinload(Order.items), selectinload(Order.vouchers), selectinload(Order.checkouts))
    if params.cursor:
        created, last_id = _decode_cursor(params.cursor)
        query = query.where(or_(Order.created_at < created, and_(Order.created_at == created, Order.id < last_id)))
    rows = list(db.session.execute(query.limit(params.limit + 1)).scalars())
    page = rows[: params.limit]
    has_more = len(rows) > params.limit
    body = {
        "data": [order_payload(order) for order in page],
        "has_more": has_more,
        "next_cursor": _encode_cursor(page[-1]) if has_more and page else None,
    }
    return answer(OrderList, body)


@api_route(
    "/orders/<int:order_id>/checkout",
    ("POST",),
    body=CheckoutCreate,
    resp={"HTTP_201": OrderOut, **_problems(400, 401, 404, 409, 413, 415, 422, 429)},
)
def checkout(order_id: int):
    """Open the order's customer link

    At a provider, or `choice` for the customer to pick; `switch: true` changes a live link's provider.
    """
    body = parse_body(CheckoutCreate, request.get_data(cache=True))
    order = scoped_order(order_id)
    try:
        open_link(order, body.provider, None, request.remote_addr or "", switch=body.switch)
    except CheckoutError as exc:
        return problem(
            409, _("The link could not be opened"), str(exc), kind="checkout", errors=[("provider", str(exc))]
        )
    order = db.session.get(Order, order_id, populate_existing=True)
    return answer(OrderOut, order_payload(order), 201)


def refund_key() -> str:
    """The refund's own key: derived from the Idempotency-Key (so the same API request never sends two refunds, even
    after its record expired), else a new one."""
    header = g.get("idempotency_key")
    if not header:
        return new_idempotency_key()
    digest = hashlib.sha256(f"{current_key().id}\n{header}".encode()).hexdigest()
    return f"api-{digest[:40]}"


def refund_payload(refund, order: Order) -> dict:
    return {
        "id": refund.id,
        "order_id": refund.order_id,
        "checkout_id": refund.checkout_id,
        "provider": refund.checkout.provider,
        "amount": refund.amount,
        "reason": refund.reason,
        "state": refund.state,
        "message": refund.message,
        "created_at": iso(refund.created_at),
        "order": order_payload(order),
    }


@api_route(
    "/orders/<int:order_id>/refunds",
    ("POST",),
    body=RefundCreate,
    resp={"HTTP_201": RefundOut, "HTTP_200": RefundOut, **_problems(400, 401, 403, 404, 409, 413, 415, 422, 429)},
    refunds=True,
)
def refund(order_id: int):
    """Refund a paid order

    The refund page's rules; sent to the provider once at most. 200 when this request's refund exists already.
    """
    body = parse_body(RefundCreate, request.get_data(cache=True))
    order = scoped_order(order_id)
    formdata = MultiDict(
        [
            ("amount", str(body.amount)),
            ("reason", body.reason),
            ("invoice_state", body.invoice_state or "4"),
            ("manual_reference", body.manual_reference),
        ]
    )
    form = RefundForm(formdata=formdata, meta={"csrf": False})
    if not form.validate():
        return invalid(
            [
                (name, message)
                for name in ("amount", "reason", "invoice_state", "manual_reference")
                for message in form[name].errors
            ]
        )
    key = refund_key()
    done = refund_by_key(key)
    if done is not None:  # this request's refund exists already (its idempotency record expired): never a second
        if done.order_id != order.id:
            return invalid([("Idempotency-Key", _("This Idempotency-Key was used for another order's refund."))])
        return answer(RefundOut, refund_payload(done, order))
    try:
        plan = plan_refund(
            order,
            body.checkout_id,
            form.amount.amount,
            form.reason.data,
            invoice_state=body.invoice_state or "",
            manual_reference=form.manual_reference.data or "",
        )
        made, created = submit_refund(plan, key, None)
    except RefundRefused as exc:
        return invalid([(exc.field, exc.message)])
    forget_live(made.checkout_id)
    order = db.session.get(Order, order_id, populate_existing=True)
    return answer(RefundOut, refund_payload(made, order), 201 if created else 200)


def transaction_payload(tx) -> dict:
    return {
        "transaction_id": tx.transaction_id,
        "kind": tx.kind,
        "state": getattr(tx.state, "value", str(tx.state)),
        "amount": tx.amount,
        "refunded_amount": tx.refunded_amount,
        "fee": tx.fee,
        "method": tx.method,
        "card_brand": tx.card_brand,
        "card_last4": tx.card_last4,
        "created_at": iso(tx.created_at),
        "refunded_at": iso(tx.refunded_at),
        "message": tx.message,
    }


@api_route(
    "/orders/<int:order_id>/transactions",
    ("GET",),
    resp={"HTTP_200": TransactionsOut, **_problems(401, 404, 429)},
)
def transactions(order_id: int):
    """The providers' live view of the order's payment attempts

    Each attempt as its provider reports it now (never from a cache), next to the portal's record.
    """
    order = scoped_order(order_id)
    attempts = []
    for checkout_row, view, comparison in order_rows(order):
        attempts.append(
            {
                "checkout_id": checkout_row.id,
                "reference": checkout_row.reference,
                "provider": checkout_row.provider,
                "state": checkout_row.state,
                "amount": checkout_row.amount,
                "provider_status": view.status,
                "live_state": comparison.live_state,
                "live_paid": comparison.live_paid,
                "live_refunded": comparison.live_refunded,
                "differs": comparison.differs,
                "transactions": [transaction_payload(tx) for tx in view.transactions],
            }
        )
    return answer(TransactionsOut, {"order_id": order.id, "attempts": attempts})


# ---------------------------------------------------------------- the document


@functools.cache
def openapi_document() -> dict:
    """The OpenAPI 3.1 document of the routes above (built once per process)."""
    document = json.loads(json.dumps(spec.spec))
    document["openapi"] = "3.1.0"
    for methods in document.get("paths", {}).values():
        for operation in methods.values():
            for detail in operation.get("responses", {}).values():
                content = detail.get("content") or {}
                schema = content.get("application/json", {}).get("schema", {})
                if schema.get("$ref", "").endswith("/Problem"):
                    detail["content"] = {PROBLEM_JSON: content["application/json"]}
    return document


@bp.get("/openapi.json")
def openapi():
    """The OpenAPI document (no key needed)."""
    return Response(json.dumps(openapi_document(), ensure_ascii=False), mimetype="application/json")


def schema_rows(schema: dict, components: dict) -> list[dict]:
    """A schema's properties as table rows: name, type, required, description."""
    required = set(schema.get("required", ()))
    rows = []
    for name, prop in (schema.get("properties") or {}).items():
        rows.append(
            {
                "name": name,
                "type": type_text(prop),
                "required": name in required,
                "description": prop.get("description", ""),
            }
        )
    return rows


def type_text(prop: dict) -> str:
    if "$ref" in prop:
        return prop["$ref"].rsplit("/", 1)[-1]
    if "enum" in prop:
        return " | ".join(json.dumps(v) for v in prop["enum"])
    if "const" in prop:
        return json.dumps(prop["const"])
    if "anyOf" in prop:
        return " | ".join(type_text(p) for p in prop["anyOf"])
    if prop.get("type") == "array":
        return f"array of {type_text(prop.get('items', {}))}"
    return str(prop.get("type", "any"))


@bp.app_template_filter("api_type")
def api_type_filter(schema) -> str:
    return type_text(schema or {})


@bp.get("/docs")
def docs():
    """The document as a page: each route with its parameters, body and answers, then every schema."""
    document = openapi_document()
    components = document.get("components", {}).get("schemas", {})
    operations = []
    for path, methods in document.get("paths", {}).items():
        for method, op in methods.items():
            body_ref = ""
            content = (op.get("requestBody") or {}).get("content", {})
            for media in content.values():
                body_ref = type_text(media.get("schema", {}))
            responses = []
            for status, detail in op.get("responses", {}).items():
                schema = next(iter((detail.get("content") or {}).values()), {}).get("schema", {})
                responses.append((status, type_text(schema) if schema else "", detail.get("description", "")))
            operations.append(
                {
                    "method": method.upper(),
                    "path": path,
                    "summary": op.get("summary", ""),
                    "description": op.get("description", ""),
                    "parameters": op.get("parameters", []),
                    "body": body_ref,
                    "responses": responses,
                }
            )
    schemas = [
        (name, schema.get("description", ""), schema_rows(schema, components)) for name, schema in components.items()
    ]
    return render_template("api/docs.html", document=document, operations=operations, schemas=schemas)
