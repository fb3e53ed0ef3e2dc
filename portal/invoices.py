"""E-invoice data given at order time (Taiwan's uniform invoice): pure rules, no Flask, no database.

One module for every way in (the order form, the JSON API): `read_invoice` takes what was typed and gives back the
normalised data or, per field, the reason it was refused (a code; the forms turn codes into messages).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

# models.InvoiceKind's values (not imported: this module, like the providers that read it, needs no database).
PAPER, MOBILE, CITIZEN, BUSINESS, DONATION = "paper", "mobile", "citizen", "business", "donation"
KINDS = (PAPER, MOBILE, CITIZEN, BUSINESS, DONATION)

# Field names, the same in the form and in the API.
KIND_FIELD = "invoice_kind"
CARRIER_FIELD = "invoice_carrier"
TAX_ID_FIELD = "invoice_tax_id"
TITLE_FIELD = "invoice_title"
DONATION_FIELD = "invoice_donation_code"

TITLE_MAX_CHARS = 100  # Order.invoice_title is String(100)

MOBILE_BARCODE = re.compile(r"/[0-9A-Z.+\-]{7}")  # 手機條碼: "/" and 7 of 0-9 A-Z . + -
CITIZEN_CERTIFICATE = re.compile(r"[A-Z]{2}[0-9]{14}")  # 自然人憑證: 2 upper-case letters and 14 digits
TAX_ID = re.compile(r"[0-9]{8}")  # 統一編號
DONATION_CODE = re.compile(r"[0-9]{3,7}")  # 捐贈碼 (愛心碼)

# The Ministry of Finance's weights for the tax ID checksum.
TAX_ID_WEIGHTS = (1, 2, 1, 2, 1, 2, 4, 1)


@dataclass(frozen=True)
class Invoice:
    """How the customer takes the invoice, and only the details that kind uses."""

    kind: str  # an InvoiceKind value
    carrier: str = ""  # mobile barcode or citizen certificate
    tax_id: str = ""
    title: str = ""  # the business's name
    donation_code: str = ""


def normalise(text: str | None) -> str:
    """Typed text as the rules read it: full-width forms (an input method's ／ＡＢＣ１２３) made half-width, no spaces
    around."""
    if not isinstance(text, str):
        return ""
    return unicodedata.normalize("NFKC", text).strip()


def tax_id_checksum_ok(tax_id: str) -> bool:
    """Whether 8 ASCII digits pass the Ministry of Finance's checksum.

    Each digit times its weight (1,2,1,2,1,2,4,1); the digits of each product are added up. The sum must divide by 5
    (the rule since 2023; the older numbers, divisible by 10, pass it too). When the 7th digit is 7 its product is
    28, whose digits may count as 1 or as 0: then the sum or the sum + 1 may divide by 5.
    """
    if not TAX_ID.fullmatch(tax_id or ""):
        return False
    total = 0
    for digit, weight in zip(tax_id, TAX_ID_WEIGHTS, strict=True):
        tens, ones = divmod(int(digit) * weight, 10)
        total += tens + ones
    if total % 5 == 0:
        return True
    return tax_id[6] == "7" and (total + 1) % 5 == 0


def check_mobile_barcode(text: str | None) -> tuple[str, str | None]:
    """(the barcode upper-cased, None) or (what was typed, the error code)."""
    value = normalise(text).upper()
    if not value:
        return value, "carrier_required"
    if not MOBILE_BARCODE.fullmatch(value):
        return value, "mobile_format"
    return value, None


def check_citizen_certificate(text: str | None) -> tuple[str, str | None]:
    value = normalise(text).upper()
    if not value:
        return value, "carrier_required"
    if not CITIZEN_CERTIFICATE.fullmatch(value):
        return value, "citizen_format"
    return value, None


def check_tax_id(text: str | None) -> tuple[str, str | None]:
    value = normalise(text)
    if not value:
        return value, "tax_id_required"
    if not TAX_ID.fullmatch(value):
        return value, "tax_id_format"
    if not tax_id_checksum_ok(value):
        return value, "tax_id_checksum"
    return value, None


def check_title(text: str | None) -> tuple[str, str | None]:
    value = normalise(text)
    if not value:
        return value, "title_required"
    if len(value) > TITLE_MAX_CHARS:
        return value, "title_too_long"
    if any(unicodedata.category(ch) in ("Cc", "Cf") for ch in value) or "<" in value or ">" in value:
        return value, "title_characters"
    return value, None


def check_donation_code(text: str | None) -> tuple[str, str | None]:
    value = normalise(text)
    if not value:
        return value, "donation_required"
    if not DONATION_CODE.fullmatch(value):
        return value, "donation_format"
    return value, None


def read_invoice(
    kind: str | None,
    carrier: str | None = None,
    tax_id: str | None = None,
    title: str | None = None,
    donation_code: str | None = None,
) -> tuple[Invoice | None, dict[str, str], dict[str, str]]:
    """(the invoice or None, errors by field name, normalised values by field name).

    A blank kind means no e-invoice data. Only the chosen kind's fields are read; the others are ignored.
    """
    kind = normalise(kind).lower() if isinstance(kind, str) else ""
    if not kind:
        return None, {}, {}
    if kind not in KINDS:
        return None, {KIND_FIELD: "kind"}, {}
    checks: dict[str, tuple[str, str | None]] = {}
    if kind == MOBILE:
        checks[CARRIER_FIELD] = check_mobile_barcode(carrier)
    elif kind == CITIZEN:
        checks[CARRIER_FIELD] = check_citizen_certificate(carrier)
    elif kind == BUSINESS:
        checks[TAX_ID_FIELD] = check_tax_id(tax_id)
        checks[TITLE_FIELD] = check_title(title)
    elif kind == DONATION:
        checks[DONATION_FIELD] = check_donation_code(donation_code)
    values = {name: value for name, (value, _) in checks.items()}
    errors = {name: code for name, (_, code) in checks.items() if code}
    if errors:
        return None, errors, values
    return (
        Invoice(
            kind=kind,
            carrier=values.get(CARRIER_FIELD, ""),
            tax_id=values.get(TAX_ID_FIELD, ""),
            title=values.get(TITLE_FIELD, ""),
            donation_code=values.get(DONATION_FIELD, ""),
        ),
        {},
        values,
    )


def columns(invoice: Invoice | None) -> dict[str, str | None]:
    """The Order columns for an invoice (all None without one), for creating or updating an order."""
    if invoice is None:
        return dict.fromkeys(
            ("invoice_kind", "invoice_carrier", "invoice_tax_id", "invoice_title", "invoice_donation_code")
        )
    return {
        "invoice_kind": invoice.kind,
        "invoice_carrier": invoice.carrier or None,
        "invoice_tax_id": invoice.tax_id or None,
        "invoice_title": invoice.title or None,
        "invoice_donation_code": invoice.donation_code or None,
    }


def of_order(order) -> Invoice | None:
    """The invoice an order's columns hold, or None."""
    if not order.invoice_kind:
        return None
    return Invoice(
        kind=order.invoice_kind,
        carrier=order.invoice_carrier or "",
        tax_id=order.invoice_tax_id or "",
        title=order.invoice_title or "",
        donation_code=order.invoice_donation_code or "",
    )
