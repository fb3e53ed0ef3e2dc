"""Orders: list, detail and the order builder."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required

from portal.forms import ItemForm, OrderForm, VoucherForm, without_row
from portal.models import ORDER_STATES
from portal.orders import OrderFilter, create_order, get_order, list_orders

bp = Blueprint("orders", __name__)


# The no-script row buttons: submit name -> the form's row list.
ADD_BUTTONS = {"add_item": "items", "add_voucher": "vouchers"}
REMOVE_BUTTONS = {"remove_item": "items", "remove_voucher": "vouchers"}


@bp.get("/orders")
@login_required
def index():
    """The merchant's orders, newest first; filter by state, search by customer or order number."""
    flt = OrderFilter.from_args(request.args)
    page = list_orders(current_user.merchant_id, flt)
    return render_template("orders/index.html", page=page, flt=flt, states=ORDER_STATES)


@bp.get("/orders/<int:order_id>")
@login_required
def detail(order_id: int):
    """One order: customer, items, vouchers, totals, state, and (from checkout) its payment links."""
    order = get_order(order_id)
    return render_template("orders/detail.html", order=order)


# The builder reads the posted HTML form only: Flask-WTF would otherwise read a JSON body, and a JSON list or
# string there raises inside WTForms (a 500).
@bp.route("/orders/new", methods=["GET", "POST"])
@login_required
def new():
    """The order builder; the row buttons re-render the form without validating it (works with scripting off)."""
    if request.method == "POST":
        removing = next((name for name in REMOVE_BUTTONS if name in request.form), None)
        if removing:
            formdata = without_row(request.form, REMOVE_BUTTONS[removing], request.form.get(removing, ""))
            return render_builder(OrderForm(formdata=formdata))
    form = OrderForm(formdata=request.form if request.method == "POST" else None)
    adding = next((name for name in ADD_BUTTONS if name in request.form), None) if request.method == "POST" else None
    if adding:
        if not form.add_row(form[ADD_BUTTONS[adding]]):
            flash(_("This order has as many rows as it can take."), "warning")
        return render_builder(form)
    if form.validate_on_submit():
        order = create_order(form.draft(), merchant_id=current_user.merchant_id, user_id=current_user.id)
        flash(_("Order %(number)s saved.", number=order.number), "success")
        return redirect(url_for("orders.detail", order_id=order.id))
    return render_builder(form)


def render_builder(form: OrderForm):
    """The builder page, with blank row templates for the script and the server's totals of what parses so far."""
    return render_template(
        "orders/new.html",
        form=form,
        totals=form.preview_totals(),
        item_template=ItemForm(prefix="items-__N__-"),
        voucher_template=VoucherForm(prefix="vouchers-__N__-"),
    )
