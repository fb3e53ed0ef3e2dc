"""What the providers say now: an order's transactions and the merchant's overview."""

from flask import Blueprint

bp = Blueprint("transactions", __name__)
