"""Orders: list (and its CSV), detail, the order builder, and a draft's edit, delete and copy."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint, Response, flash, redirect, render_template, request, stream_with_context, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required

from portal.extensions import db
from portal.filters import TAIPEI
from portal.forms import ItemForm, OrderForm, VoucherForm, without_row
from portal.labels import PROVIDER_NAMES
from portal.models import ORDER_STATES
from portal.order_export import csv_chunks
from portal.orders import (
    INVOICE_FIELDS,
    OrderFilter,
    create_order,
    delete_draft,
    duplicate_order,
    get_order,
    is_editable,
    list_orders,
    update_draft,
)
from portal.security import audit

bp = Blueprint("orders", __name__)


# The no-script row buttons: submit name -> the form's row list.
ADD_BUTTONS = {"add_item": "items", "add_voucher": "vouchers"}
REMOVE_BUTTONS = {"remove_item": "items", "remove_voucher": "vouchers"}


@bp.get("/orders")
@login_required
def index():
    """The merchant's orders, newest first; filter by Taipei dates, provider and state, search by customer or number."""
    flt = OrderFilter.from_args(request.args)
    page = list_orders(current_user.merchant_id, flt)
    return render_template("orders/index.html", page=page, flt=flt, states=ORDER_STATES, providers=PROVIDER_NAMES)


@bp.get("/orders.csv")
@login_required
def export_csv():
    """Every order the list's filters match (not one page), as CSV, written while the orders are read."""
    flt = OrderFilter.from_args(request.args)
    merchant_id = current_user.merchant_id
    # Who exported which orders: the filters applied (none: all the shop's orders).
    detail = {
        "date_from": flt.date_from,
        "date_to": flt.date_to,
        "provider": flt.provider,
        "state": flt.state,
        "search": flt.q,
    }
    audit("orders_exported", **{name: str(value) for name, value in detail.items() if value})
    db.session.commit()
    filename = f"orders-{datetime.now(UTC).astimezone(TAIPEI):%Y%m%d-%H%M}.csv"
    return Response(
        stream_with_context(csv_chunks(merchant_id, flt)),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@bp.get("/orders/<int:order_id>")
@login_required
def detail(order_id: int):
    """One order: customer, items, vouchers, totals, state, and (from checkout) its payment links."""
    order = get_order(order_id)
    return render_template("orders/detail.html", order=order, editable=is_editable(order))


# The builder reads the posted HTML form only: Flask-WTF would otherwise read a JSON body, and a JSON list or
# string there raises inside WTForms (a 500).
@bp.route("/orders/new", methods=["GET", "POST"])
@login_required
def new():
    """The order builder; the row buttons re-render the form without validating it (works with scripting off)."""

    def save(form: OrderForm):
        order = create_order(form.draft(), merchant_id=current_user.merchant_id, user_id=current_user.id)
        flash(_("Order %(number)s saved.", number=order.number), "success")
        return redirect(url_for("orders.detail", order_id=order.id))

    return builder(save, OrderForm(formdata=None))


@bp.route("/orders/<int:order_id>/edit", methods=["GET", "POST"])
@login_required
def edit(order_id: int):
    """The builder again, filled in with a draft's customer, items, vouchers and note; saving replaces them."""
    order = get_order(order_id, lock=request.method == "POST")
    if not is_editable(order):
        flash(_("Only a draft that has no payment link yet can be changed."), "warning")
        return redirect(url_for("orders.detail", order_id=order.id))

    def save(form: OrderForm):
        update_draft(order, form.draft(), user_id=current_user.id)
        flash(_("Order %(number)s saved.", number=order.number), "success")
        return redirect(url_for("orders.detail", order_id=order.id))

    return builder(
        save,
        OrderForm(formdata=None, data=form_data(order)),
        action=url_for("orders.edit", order_id=order.id),
        heading=_("Edit order %(number)s", number=order.number),
        cancel_url=url_for("orders.detail", order_id=order.id),
    )


@bp.route("/orders/<int:order_id>/delete", methods=["GET", "POST"])
@login_required
def delete(order_id: int):
    """GET asks to confirm; POST deletes the draft (never an order that has had a payment link)."""
    order = get_order(order_id, lock=request.method == "POST")
    if not is_editable(order):
        flash(_("Only a draft that has no payment link yet can be deleted."), "warning")
        return redirect(url_for("orders.detail", order_id=order.id))
    if request.method == "POST":
        number = order.number
        delete_draft(order)
        flash(_("Order %(number)s deleted.", number=number), "success")
        return redirect(url_for("orders.index"))
    return render_template("orders/delete.html", order=order)


@bp.post("/orders/<int:order_id>/duplicate")
@login_required
def duplicate(order_id: int):
    """A new draft with the order's customer, items, shipping, vouchers and note, opened in the builder."""
    copy = duplicate_order(get_order(order_id), user_id=current_user.id)
    flash(_("Copied as a new draft, order %(number)s. Check it and save.", number=copy.number), "success")
    return redirect(url_for("orders.edit", order_id=copy.id))


def form_data(order) -> dict:
    """An order as the builder's fields hold it (text, as typed), for editing it."""
    data = {
        "customer_name": order.customer_name,
        "customer_email": order.customer_email,
        "shipping_fee": str(order.shipping_fee),
        "note": order.note,
        "items": [
            {"sku": i.sku, "name": i.name, "unit_price": str(i.unit_price), "quantity": str(i.quantity)}
            for i in order.items
        ],
        "vouchers": [
            {
                "kind": v.kind,
                "product_id": v.product_id,
                "serial_number": v.serial_number,
                "name": v.name,
                "amount": str(v.amount),
            }
            for v in order.vouchers
        ],
    }
    # The e-invoice fields, where the form has fields of the columns' names.
    data.update({name: getattr(order, name) for name in INVOICE_FIELDS if getattr(order, name) is not None})
    return data


def builder(save, blank: OrderForm, **context):
    """The builder's flow for a new order and for a draft: row buttons re-render, a valid form is saved."""
    if request.method == "POST":
        removing = next((name for name in REMOVE_BUTTONS if name in request.form), None)
        if removing:
            formdata = without_row(request.form, REMOVE_BUTTONS[removing], request.form.get(removing, ""))
            return render_builder(OrderForm(formdata=formdata), **context)
    form = OrderForm(formdata=request.form) if request.method == "POST" else blank
    adding = next((name for name in ADD_BUTTONS if name in request.form), None) if request.method == "POST" else None
    if adding:
        if not form.add_row(form[ADD_BUTTONS[adding]]):
            flash(_("This order has as many rows as it can take."), "warning")
        return render_builder(form, **context)
    if form.validate_on_submit():
        return save(form)
    return render_builder(form, **context)


def render_builder(form: OrderForm, **context):
    """The builder page, with blank row templates for the script and the server's totals of what parses so far."""
    return render_template(
        "orders/new.html",
        form=form,
        totals=form.preview_totals(),
        item_template=ItemForm(prefix="items-__N__-"),
        voucher_template=VoucherForm(prefix="vouchers-__N__-"),
        **context,
    )
