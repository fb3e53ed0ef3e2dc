"""Refunds (admins only)."""

from flask import Blueprint

bp = Blueprint("refunds", __name__)
