"""What a stored callback may keep: no whole card number, no card token, no MyPay order key, for every provider.

Card numbers are cut to their last four digits wherever they are: in the fields that name them (`cardNum`, `cardno`,
`paymentInfo`), and as any Luhn-valid run of 13 to 19 digits anywhere in the body (spaces or dashes between digits
too), and a provider's own masking that keeps the first six (`493817******0003`) is cut to the last four as well.
Secret fields are replaced by a marker; the caller keeps them encrypted. Bodies of any depth are walked without
recursion, so no body makes the intake fail.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime

REDACTED = "[encrypted]"

# Secret in any provider's callback: Oen's saved-card token, MyPay's per-order key.
SECRET_FIELDS = frozenset({"token", "key"})
CARD_FIELDS = frozenset({"cardnum", "cardno", "card_no", "card_number", "cardnumber", "pan"})
CARD_CONTAINERS = frozenset({"paymentinfo"})

# Runs of at least 13 digits only: a shorter one is no card number, and a body's many short runs (an encrypted field
# is full of them) are not handed one by one to the Luhn check. Each pattern starts with the digit and looks behind it
# after (`\d(?<!X.)` is `(?<!X)\d`): the regular expression engine then skips ahead to the next digit, a third faster
# on a callback's body.
_DIGIT_RUN = re.compile(r"\d(?<![\d*xX•].)(?:[ -]?\d){12,}(?![\d*xX•])")
_MASKED_PAN = re.compile(r"\d(?<![\d ].)[\d ]{0,18}[*xX•][*xX• ]{0,20}(\d{4})(?!\d)")  # bounded: linear


def luhn_ok(digits: str) -> bool:
    """Whether a digit string passes the Luhn check."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _timestamp(digits: str) -> bool:
    """A provider's YYYYMMDDHHmmss time (MyPay finishtime): 14 digits starting 20, which no card network issues."""
    try:
        return len(digits) == 14 and digits.startswith("20") and bool(datetime.strptime(digits, "%Y%m%d%H%M%S"))
    except ValueError:
        return False


def has_card_number(digits: str) -> bool:
    """Whether a whole run of digits is a Luhn-valid card number of 13 to 19 digits."""
    return 13 <= len(digits) <= 19 and not _timestamp(digits) and luhn_ok(digits)


def last4_only(value: object) -> str:
    """A card number as no more than its last four digits."""
    digits = "".join(ch for ch in str(value or "") if ch.isascii() and ch.isdigit())
    return "•••• " + digits[-4:] if digits else ""


def mask_card_text(text: str) -> str:
    """Text with every card number (whole, or masked keeping its first digits) cut to the last four digits."""
    if not text:
        return text or ""
    text = _MASKED_PAN.sub(lambda m: "•••• " + m.group(1), text)

    def repl(match: re.Match) -> str:
        digits = re.sub(r"\D", "", match.group(0))
        return "•••• " + digits[-4:] if has_card_number(digits) else match.group(0)

    return _DIGIT_RUN.sub(repl, text)


def scrub(value: object, secret_fields: Iterable[str] = ()) -> tuple[object, dict[str, str]]:
    """A copy of a parsed body with secrets replaced and card numbers cut; and the top-level secrets removed.

    Walked with an explicit stack: any depth is fine.
    """
    secrets_ = {name.lower() for name in secret_fields} | SECRET_FIELDS
    found: dict[str, str] = {}
    root: list[object] = [None]
    stack: list[tuple[object, list | dict, object, bool, int]] = [(value, root, 0, False, 0)]
    while stack:
        item, parent, slot, in_card, depth = stack.pop()
        if isinstance(item, dict):
            out: dict = {}
            parent[slot] = out
            for key, child in item.items():
                name = str(key).lower()
                if name in secrets_ and child not in (None, "", [], {}):
                    if depth == 0:
                        found[str(key)] = child if isinstance(child, str) else str(child)
                    out[key] = REDACTED
                elif name in CARD_FIELDS and isinstance(child, (str, int)) and not isinstance(child, bool):
                    out[key] = last4_only(child)
                else:
                    out[key] = None
                    stack.append((child, out, key, in_card or name in CARD_CONTAINERS, depth + 1))
        elif isinstance(item, list):
            out_list: list = [None] * len(item)
            parent[slot] = out_list
            for index, child in enumerate(item):
                stack.append((child, out_list, index, in_card, depth + 1))
        elif isinstance(item, str):
            in_card = in_card and sum(ch.isdigit() for ch in item) >= 8  # counted only inside a card's fields
            parent[slot] = last4_only(item) if in_card else mask_card_text(item)
        elif isinstance(item, int) and not isinstance(item, bool) and has_card_number(str(abs(item))):
            parent[slot] = last4_only(item)
        else:
            parent[slot] = item
    return root[0], found
