"""Merchant settings and users (admins only)."""

from flask import Blueprint

bp = Blueprint("settings", __name__)
