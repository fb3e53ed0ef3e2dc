"""Helpers for the order tests: a valid builder post, and reading fields and their messages off a page."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser


def order_post(**overrides) -> dict[str, str]:
    """A valid order: two items (2 × 100 + 3 × 35 = 305), shipping 60, two vouchers (50 + 10): payable 305."""
    data = {
        "customer_name": "王小明",
        "customer_email": "ming@example.tw",
        "shipping_fee": "60",
        "note": "Leave at the door\nthanks",
        "items-0-sku": "TEA-01",
        "items-0-name": "高山茶",
        "items-0-unit_price": "100",
        "items-0-quantity": "2",
        "items-1-sku": "",
        "items-1-name": "Mooncake",
        "items-1-unit_price": "35",
        "items-1-quantity": "3",
        "vouchers-0-kind": "paid",
        "vouchers-0-product_id": "P-100",
        "vouchers-0-serial_number": "SN-0001",
        "vouchers-0-name": "Gift card",
        "vouchers-0-amount": "50",
        "vouchers-1-kind": "free",
        "vouchers-1-product_id": "P-200",
        "vouchers-1-serial_number": "SN-0002",
        "vouchers-1-name": "Welcome voucher",
        "vouchers-1-amount": "10",
    }
    for key, value in overrides.items():
        key = key.replace("__", "-")
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return data


@dataclass
class Field:
    name: str
    value: str | None = None
    errors: list[str] = field(default_factory=list)


class _PageParser(HTMLParser):
    """Collects each form control's value and the messages of the `.field` block it sits in."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.fields: dict[str, Field] = {}
        self.loose_errors: list[str] = []
        self._block: list[Field] | None = None
        self._block_errors: list[str] = []
        self._depth = 0
        self._in_error = False
        self._error_text = ""
        self._textarea: Field | None = None
        self._select: Field | None = None
        self._in_template = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        classes = (attrs.get("class") or "").split()
        if tag == "template":
            self._in_template += 1
        if self._in_template:
            return
        if tag == "div":
            if self._block is not None:
                self._depth += 1
            elif "field" in classes:
                self._block, self._block_errors, self._depth = [], [], 0
        if tag == "p" and "error" in classes:
            self._in_error, self._error_text = True, ""
        name = attrs.get("name")
        if tag in ("input", "textarea", "select") and name and attrs.get("type") not in ("submit", "hidden"):
            control = Field(name, attrs.get("value", "") if tag == "input" else "")
            self.fields[name] = control
            if self._block is not None:
                self._block.append(control)
            if tag == "textarea":
                self._textarea = control
            if tag == "select":
                self._select, control.value = control, None
        if tag == "option" and self._select is not None and "selected" in attrs:
            self._select.value = attrs.get("value")

    def handle_endtag(self, tag):
        if tag == "template":
            self._in_template -= 1
        if self._in_template:
            return
        if tag == "p" and self._in_error:
            self._in_error = False
            (self._block_errors if self._block is not None else self.loose_errors).append(self._error_text.strip())
        if tag == "textarea":
            self._textarea = None
        if tag == "select":
            self._select = None
        if tag == "div" and self._block is not None:
            if self._depth:
                self._depth -= 1
            else:
                for control in self._block:
                    control.errors.extend(self._block_errors)
                self._block = None

    def handle_data(self, data):
        if self._in_template:
            return
        if self._in_error:
            self._error_text += data
        if self._textarea is not None:
            self._textarea.value += data


@dataclass
class Page:
    fields: dict[str, Field]
    loose_errors: list[str]

    def errors(self) -> dict[str, list[str]]:
        found = {name: f.errors for name, f in self.fields.items() if f.errors}
        if self.loose_errors:
            found["_rows"] = self.loose_errors
        return found

    def value(self, name: str) -> str | None:
        return self.fields[name].value


def read_page(html: str) -> Page:
    parser = _PageParser()
    parser.feed(html)
    parser.close()
    return Page(parser.fields, parser.loose_errors)
