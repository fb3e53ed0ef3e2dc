"""The money rules: whole TWD amounts, limits, totals (portal/money.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portal import money
from portal.money import AmountError, Line, check_order, meets_minimum, order_totals, parse_amount


@pytest.mark.parametrize(
    ("text", "value"),
    [("0", 0), ("1", 1), ("100", 100), (" 42 ", 42), ("\t7\n", 7), ("007", 7), ("1000000", 1_000_000)],
)
def test_parse_amount_accepts_whole_ascii_numbers(text, value):
    assert parse_amount(text) == value


@pytest.mark.parametrize(
    ("text", "code"),
    [
        (None, "required"),
        ("", "required"),
        ("   ", "required"),
        ("1.5", "decimal"),
        ("100.", "decimal"),
        (".5", "decimal"),
        ("1.2.3", "decimal"),
        ("-1", "negative"),
        ("-0", "negative"),
        ("−5", "negative"),  # U+2212 MINUS SIGN
        ("-1.5", "negative"),
        ("²", "digits"),
        ("①", "digits"),
        ("١٢٣", "digits"),  # Arabic-Indic digits
        ("１．５", "decimal"),  # full-width, as an input method types it
        ("－１２００", "negative"),
        ("NT$-100", "negative"),
        ("-NT$100", "negative"),
        ("1,200.50", "decimal"),
        ("NT$", "required"),
        ("1 200", "spaces"),
        ("１　２００", "spaces"),  # an ideographic space inside
        ("1e3", "exponent"),
        ("1E3", "exponent"),
        ("1e+3", "exponent"),
        ("2.5e-1", "exponent"),
        ("NaN", "not_number"),
        ("nan", "not_number"),
        ("inf", "not_number"),
        ("-Infinity", "not_number"),
        ("1 000", "spaces"),
        ("1\u00a0000", "spaces"),
        ("1\u200b0", "spaces"),
        ("+5", "plus_sign"),
        ("1,00", "separator"),
        ("12,00", "separator"),
        ("1,2,3", "separator"),
        ("0,100", "separator"),
        ("1,0000", "separator"),
        ("9,999,999,999,999", "too_long"),
        ("abc", "not_number"),
        ("0x10", "not_number"),
        ("1_000", "not_number"),
        ("12abc", "not_number"),
        ("9" * 13, "too_long"),
        ("9" * 5000, "too_long"),
    ],
)
def test_parse_amount_refuses_with_a_reason(text, code):
    with pytest.raises(AmountError) as caught:
        parse_amount(text, "items-0-unit_price")
    assert caught.value.code == code
    assert caught.value.field == "items-0-unit_price"


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1,200", 1200),
        ("1,234,567", 1_234_567),
        ("１２００", 1200),  # full-width digits, as a Chinese input method types them
        ("1０0", 100),
        ("１，２００", 1200),  # full-width comma
        ("NT$1,200", 1200),
        ("NT$ 1200", 1200),
        ("nt$60", 60),
        ("ＮＴ＄１，２００", 1200),
        ("$500", 500),
        ("　１２００　", 1200),  # ideographic spaces around
        (" 1,000 ", 1000),
    ],
)
def test_parse_amount_accepts_what_people_type(text, value):
    assert parse_amount(text) == value


def test_leading_zeros_do_not_count_towards_the_digit_limit():
    assert parse_amount("0" * 5000 + "12") == 12


@pytest.mark.parametrize(
    ("limits", "ok", "too_small", "too_large"),
    [
        (money.QUANTITY, [1, 9_999], 0, 10_000),
        (money.UNIT_PRICE, [0, 1_000_000], None, 1_000_001),
        (money.SHIPPING_FEE, [0, 1_000_000], None, 1_000_001),
        (money.VOUCHER_AMOUNT, [1, 10**9], 0, None),
    ],
)
def test_limits(limits, ok, too_small, too_large):
    for value in ok:
        assert money.parse_in_range(str(value), limits) == value
    if too_small is not None:
        with pytest.raises(AmountError) as caught:
            money.parse_in_range(str(too_small), limits, "f")
        assert caught.value.code == "too_small"
    if too_large is not None:
        with pytest.raises(AmountError) as caught:
            money.parse_in_range(str(too_large), limits, "f")
        assert caught.value.code == "too_large"
        assert caught.value.params == {"min": limits[0], "max": limits[1]}


def test_totals():
    totals = check_order([Line(100, 2), Line(35, 3)], 60, [50, 10])
    assert totals == money.OrderTotals(
        subtotal=305, shipping_fee=60, voucher_total=60, payable=305, line_totals=(200, 105)
    )
    assert totals.discountable == 365


def test_vouchers_may_take_off_everything_but_one_dollar():
    assert check_order([Line(100, 1)], 10, [60, 49]).payable == 1


def test_vouchers_beyond_subtotal_and_shipping_are_refused_on_the_voucher_that_crosses():
    with pytest.raises(AmountError) as caught:
        check_order([Line(100, 1)], 10, [60, 40, 20])
    assert (caught.value.code, caught.value.field, caught.value.params) == (
        "vouchers_exceed",
        "vouchers-2-amount",
        {"max": 110},
    )


def test_payable_zero_is_refused():
    with pytest.raises(AmountError) as caught:
        check_order([Line(100, 1)], 10, [110])
    assert (caught.value.code, caught.value.field) == ("payable_too_small", "vouchers-0-amount")
    with pytest.raises(AmountError) as caught:
        check_order([Line(0, 5)], 0, [])
    assert (caught.value.code, caught.value.field) == ("payable_too_small", "items-0-unit_price")


def test_no_items_is_refused():
    with pytest.raises(AmountError) as caught:
        check_order([], 100, [])
    assert caught.value.code == "no_items"


@pytest.mark.parametrize(
    ("lines", "shipping", "vouchers", "field"),
    [
        ([Line(1, 0)], 0, [], "items-0-quantity"),
        ([Line(1, 1), Line(1, 10_000)], 0, [], "items-1-quantity"),
        ([Line(1_000_001, 1)], 0, [], "items-0-unit_price"),
        ([Line(-1, 1)], 0, [], "items-0-unit_price"),
        ([Line(1, 1)], -1, [], "shipping_fee"),
        ([Line(1, 1)], 1_000_001, [], "shipping_fee"),
        ([Line(10, 1)], 0, [1, 0], "vouchers-1-amount"),
    ],
)
def test_check_order_rechecks_every_limit(lines, shipping, vouchers, field):
    with pytest.raises(AmountError) as caught:
        check_order(lines, shipping, vouchers)
    assert caught.value.field == field


def test_an_order_too_large_for_the_database_is_refused():
    big = Line(1_000_000, 9_999)
    with pytest.raises(AmountError) as caught:
        check_order([big], 0, [])
    assert (caught.value.code, caught.value.field) == ("order_too_large", "items-0-quantity")
    with pytest.raises(AmountError) as caught:
        check_order([Line(1_000_000, 999)], 1_000_000, [])
    assert (caught.value.code, caught.value.field) == ("order_too_large", "shipping_fee")


def test_meets_minimum():
    assert meets_minimum(6, 6)
    assert not meets_minimum(5, 6)
    assert meets_minimum(1, 0)
    assert not meets_minimum(0, 0)  # never below the portal's own minimum of 1


# --- properties -----------------------------------------------------------------------------------------------------

lines_st = st.lists(st.builds(Line, st.integers(-10, 1_100_000), st.integers(-2, 10_100)), min_size=0, max_size=8)


@given(lines_st, st.integers(-10, 1_100_000), st.lists(st.integers(-5, 3_000_000), max_size=6))
def test_every_accepted_order_pays_the_sum_less_vouchers_and_at_least_one(lines, shipping, vouchers):
    try:
        totals = check_order(lines, shipping, vouchers)
    except AmountError as exc:
        assert exc.code and exc.field
        return
    expected = sum(line.unit_price * line.quantity for line in lines) + shipping - sum(vouchers)
    assert totals.payable == expected >= 1
    assert totals.voucher_total <= totals.subtotal + totals.shipping_fee
    assert all(1 <= line.quantity <= 9_999 and 0 <= line.unit_price <= 1_000_000 for line in lines)
    assert 0 <= shipping <= 1_000_000 and all(v >= 1 for v in vouchers)
    assert totals.subtotal + totals.shipping_fee <= money.ORDER_AMOUNT_MAX


@given(st.integers(0, 10**12 - 1))
def test_any_whole_number_reads_back(n):
    assert parse_amount(str(n)) == n


@given(st.text(max_size=30))
def test_parse_amount_returns_an_int_from_ascii_digits_or_refuses(text):
    try:
        value = parse_amount(text)
    except AmountError as exc:
        assert exc.code in {
            "required", "digits", "spaces", "plus_sign", "negative", "exponent", "decimal", "separator",
            "not_number", "too_long",
        }  # fmt: skip
        return
    assert isinstance(value, int) and value >= 0
    digits = money.normalise_amount_text(text).replace(",", "")
    assert digits.isascii() and digits.isdigit() and int(digits) == value


@given(st.lists(st.integers(0, 9_999), max_size=5), st.integers(0, 100))
def test_order_totals_is_plain_arithmetic(prices, shipping):
    totals = order_totals([Line(p, 2) for p in prices], shipping, [1] * len(prices))
    assert totals.payable == 2 * sum(prices) + shipping - len(prices)
