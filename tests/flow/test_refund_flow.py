"""Refunds and live transaction pages, per provider, over real HTTP through the sandbox."""

from __future__ import annotations

import re
import threading
import time
from html import unescape

import pytest
import requests

from portal import refunds as refund_service
from portal.extensions import db
from portal.models import AuditEvent, Checkout, Order, Refund
from portal.payments.redaction import luhn_ok
from sandbox import faults
from sandbox import settings as sandbox_settings
from sandbox.callbacks import wait_for_senders
from sandbox.models import SandboxExchange, SandboxMypayRefund, SandboxOenTransaction
from tests.support.browser import Browser
from tests.support.sandbox import sandbox_rows

HIDDEN_RE = re.compile(r'<input type="hidden" name="(\w+)" value="([^"]*)">')
KEY_RE = re.compile(r'name="idempotency_key" value="([^"]+)"')
CARD_RUN = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")


@pytest.fixture
def admin(live_server):
    b = Browser(live_server.url)
    b.login("admin@a.example")
    return b


def text_of(response: requests.Response) -> str:
    return unescape(response.text)


FLASH_RE = re.compile(r'class="flash flash-(\w+)"[^>]*>([^<]*)')


def flashes(response: requests.Response) -> list[tuple[str, str]]:
    return [(kind, unescape(msg).strip()) for kind, msg in FLASH_RE.findall(response.text)]


def review(browser: Browser, order_id: int, amount, reason="客戶退貨 returned", **extra) -> requests.Response:
    """Fill the refund form; returns the confirmation page (or the form with its messages)."""
    return browser.post(f"/orders/{order_id}/refunds", {"amount": str(amount), "reason": reason, **extra})


def confirm_fields(page: requests.Response) -> dict[str, str]:
    assert KEY_RE.search(page.text), flashes(page) or page.text[:3000]
    return {name: unescape(value) for name, value in HIDDEN_RE.findall(page.text)}


def refund(browser: Browser, order_id: int, amount, **extra) -> requests.Response:
    """Review, then confirm once; returns the page the confirmation lands on."""
    page = review(browser, order_id, amount, **extra)
    return browser.post(f"/orders/{order_id}/refunds", confirm_fields(page))


def paid_order(live_server, browser: Browser, provider: str, items=((1000, 1),), vouchers=(), shipping=0) -> int:
    order_id = browser.new_order(items=items, vouchers=vouchers, shipping=shipping)
    link = browser.create_link(order_id, provider)
    {"oen": browser.pay_oen, "mypay": browser.pay_mypay, "opay": browser.pay_opay}[provider](link)
    browser.wait_for_state(order_id, "paid")
    # The order can be paid (the return page asked the provider) before the provider's callback has arrived; that
    # callback's confirming query would then use up a fault a test arms next. Let the callbacks land first.
    wait_for_senders(live_server.sandbox.app, timeout=15)
    return order_id


def refund_calls(live_server, provider: str) -> int:
    """How many refund calls reached the sandbox provider."""
    rows = sandbox_rows(live_server.sandbox, SandboxExchange, provider=provider, direction="in")
    if provider == "oen":
        return sum(1 for r in rows if "/oen/api/refunds/" in r.url)
    return sum(1 for r in rows if '"api/refund"' in (r.decrypted or ""))


def order_row(live_server, order_id: int) -> Order:
    with live_server.app.app_context():
        order = db.session.get(Order, order_id)
        db.session.expunge(order)
        return order


def refunds_of(live_server, order_id: int) -> list[Refund]:
    with live_server.app.app_context():
        rows = list(db.session.execute(db.select(Refund).filter_by(order_id=order_id).order_by(Refund.id)).scalars())
        for row in rows:
            db.session.expunge(row)
        return rows


def post_at_once(live_server, browser: Browser, order_id: int, forms: list[dict]) -> list[int]:
    """POST every form to the refund page at the same moment, each from its own connection; the status codes."""
    start = threading.Barrier(len(forms))
    statuses: list[int] = []

    def send(fields):
        session = requests.Session()
        session.cookies.update(browser.http.cookies)
        start.wait()
        url = f"{live_server.url}/orders/{order_id}/refunds"
        statuses.append(session.post(url, data=fields, timeout=60).status_code)

    threads = [threading.Thread(target=send, args=(fields,)) for fields in forms]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return statuses


def assert_no_card_numbers(html: str) -> None:
    for match in CARD_RUN.finditer(html):
        digits = re.sub(r"\D", "", match.group(0))
        assert not (13 <= len(digits) <= 19 and luhn_ok(digits)), f"card-like number on the page: {match.group(0)}"


# ---------------------------------------------------------------- Oen Tech


def test_oen_partial_refund_then_a_second_is_refused(live_server, admin):
    order_id = paid_order(live_server, admin, "oen", items=((800, 2),), shipping=100)
    page = review(admin, order_id, 500)
    body = text_of(page)
    assert (
        page.status_code == 200
        and "A refund of NT$500 for transaction P" in body
        and 'data-refund-amount="500"' in body
    )
    done = admin.post(f"/orders/{order_id}/refunds", confirm_fields(page))
    assert ("success", "Refunded NT$500.") in flashes(done)
    assert order_row(live_server, order_id).state == "partially_refunded"
    assert order_row(live_server, order_id).refunded_amount == 500
    [txn] = sandbox_rows(live_server.sandbox, SandboxOenTransaction)
    assert (txn.status, txn.refund_amount) == ("refunded", 500)
    with live_server.app.app_context():
        audit = db.session.execute(db.select(AuditEvent).filter_by(action="refund_requested")).scalar_one()
        assert audit.detail["amount"] == 500 and audit.detail["reason"] == "客戶退貨 returned" and audit.user_id
    # the second refund is refused by the portal before anything is sent
    second = review(admin, order_id, 100)
    assert second.status_code == 409
    assert "Oen Tech allows one refund per transaction" in text_of(second)
    assert refund_calls(live_server, "oen") == 1
    # the refund page says so before anything is entered
    assert "data-refund-blocked" in admin.get(f"/orders/{order_id}/refunds").text


def test_oen_full_refund(live_server, admin):
    order_id = paid_order(live_server, admin, "oen", items=((1200, 1),))
    done = refund(admin, order_id, 1200)
    assert ("success", "Refunded NT$1,200.") in flashes(done)
    order = order_row(live_server, order_id)
    assert (order.state, order.refunded_amount, order.refundable) == ("refunded", 1200, 0)


def test_oen_rules_each_refused_with_their_message(live_server, admin):
    order_id = paid_order(live_server, admin, "oen", items=((1200, 1),))
    too_much = review(admin, order_id, 1201)
    assert too_much.status_code == 409 and "At most NT$1,200 can be refunded" in text_of(too_much)
    no_reason = review(admin, order_id, 100, reason="   ")
    assert no_reason.status_code == 400 and "Please say why the money is given back." in text_of(no_reason)
    zero = review(admin, order_id, 0)
    assert zero.status_code == 400 and "Enter a whole number from 1" in text_of(zero)
    assert refunds_of(live_server, order_id) == [] and refund_calls(live_server, "oen") == 0


def test_staff_cannot_refund(live_server, admin):
    order_id = paid_order(live_server, admin, "oen", items=((1200, 1),))
    staff = Browser(live_server.url)
    staff.login("staff@a.example")
    assert staff.get(f"/orders/{order_id}/refunds").status_code == 403
    assert staff.post(f"/orders/{order_id}/refunds", {"amount": "100", "reason": "x"}).status_code == 403
    assert "/refunds" not in staff.get(f"/orders/{order_id}").text


def test_twenty_resent_confirmations_make_one_refund_at_the_provider(live_server, admin):
    order_id = paid_order(live_server, admin, "oen", items=((1500, 1),))
    fields = confirm_fields(review(admin, order_id, 1500))
    results = post_at_once(live_server, admin, order_id, [fields] * 20)  # a double click, twenty times over
    assert sorted(set(results)) == [200], results
    assert refund_calls(live_server, "oen") == 1
    rows = refunds_of(live_server, order_id)
    assert [(r.state, r.amount) for r in rows] == [("succeeded", 1500)]
    order = order_row(live_server, order_id)
    assert order.refunded_amount == 1500 <= order.paid_amount


# ---------------------------------------------------------------- MyPay


def test_mypay_partial_refunds_without_vouchers_up_to_the_full_amount(live_server, admin):
    order_id = paid_order(live_server, admin, "mypay", items=((1000, 1),))
    page = review(admin, order_id, 300, invoice_state="6")
    assert 'data-invoice-state="6"' in page.text and 'data-refund-request="mypay"' in page.text
    assert ("success", "Refunded NT$300.") in flashes(admin.post(f"/orders/{order_id}/refunds", confirm_fields(page)))
    assert order_row(live_server, order_id).state == "partially_refunded"
    over = review(admin, order_id, 701)
    assert over.status_code == 409 and "At most NT$700 can be refunded" in text_of(over)
    assert ("success", "Refunded NT$700.") in flashes(refund(admin, order_id, 700))
    order = order_row(live_server, order_id)
    assert (order.state, order.refunded_amount) == ("refunded", 1000)
    made = sorted(sandbox_rows(live_server.sandbox, SandboxMypayRefund), key=lambda r: r.refund_uid)
    # the rest of a payment partly refunded already is an allowance too: the invoice has one, it can no longer be voided
    assert [(r.cost, r.invoice_state) for r in made] == [(300, "6"), (700, "6")]
    # the live page shows both refunds from refund_order
    live = text_of(admin.get(f"/orders/{order_id}/transactions"))
    assert live.count("prc 230") == 2 and "data-differs" not in live


def test_mypay_voucher_order_refunds_in_full_listing_every_paid_voucher(live_server, admin):
    order_id = paid_order(
        live_server, admin, "mypay", items=((1000, 1),), vouchers=(("paid", 50), ("paid", 70), ("free", 30))
    )
    partial = review(admin, order_id, 100)
    assert partial.status_code == 409
    assert "Orders paid with vouchers can only be refunded in full at MyPay: NT$850" in text_of(partial)
    page = review(admin, order_id, 850)
    with live_server.app.app_context():
        order = db.session.get(Order, order_id)
        paid_serials = [v.serial_number for v in order.vouchers if v.kind == "paid"]
        free_serials = [v.serial_number for v in order.vouchers if v.kind == "free"]
    listed = re.findall(r'data-voucher="([^"]+)"', page.text)
    assert listed == paid_serials and not set(free_serials) & set(listed)
    done = admin.post(f"/orders/{order_id}/refunds", confirm_fields(page))
    assert ("success", "Refunded NT$850.") in flashes(done)
    [made] = sandbox_rows(live_server.sandbox, SandboxMypayRefund)
    assert made.cost == 850 and sorted(v["serial_number"] for v in made.voucher_paid) == sorted(paid_serials)
    assert order_row(live_server, order_id).state == "refunded"
    again = review(admin, order_id, 850)
    assert again.status_code == 409 and "This order was paid with vouchers" in text_of(again)


def test_mypay_timeout_leaves_the_refund_unknown_until_a_query_settles_it(live_server, admin):
    order_id = paid_order(live_server, admin, "mypay", items=((1000, 1),))
    live_server.app.config.update(PROVIDER_TIMEOUT_S=1)
    live_server.sandbox.app.config.update(SANDBOX_HANG_S=2)
    with live_server.sandbox.ctx():
        faults.set("mypay", "hang_next")
    fields = confirm_fields(review(admin, order_id, 400))
    done = admin.post(f"/orders/{order_id}/refunds", fields)
    assert any(kind == "warning" and "will not be sent again" in msg for kind, msg in flashes(done))
    [row] = refunds_of(live_server, order_id)
    assert row.state == "unknown"
    assert order_row(live_server, order_id).state == "paid"  # nothing is assumed
    # the same confirmation sent again is not a second refund
    again = admin.post(f"/orders/{order_id}/refunds", fields)
    assert any("submitted already" in msg for _kind, msg in flashes(again))
    time.sleep(1.5)  # the sandbox carries the held call out after SANDBOX_HANG_S
    checked = admin.post(f"/orders/{order_id}/refunds/{row.id}/check")
    assert any("it is made" in msg for _kind, msg in flashes(checked))
    [row] = refunds_of(live_server, order_id)
    assert row.state == "succeeded"
    order = order_row(live_server, order_id)
    assert (order.state, order.refunded_amount) == ("partially_refunded", 400)
    assert refund_calls(live_server, "mypay") == 1


def test_unknown_refund_the_provider_never_made_is_declared_failed_only_after_the_grace(
    live_server, admin, monkeypatch
):
    order_id = paid_order(live_server, admin, "mypay", items=((1000, 1),))
    with live_server.sandbox.ctx():
        faults.set("mypay", "fail_next")  # HTTP 500 before anything is done: the portal cannot know that
    refund(admin, order_id, 1000)
    [row] = refunds_of(live_server, order_id)
    assert row.state == "unknown"
    blocked = review(admin, order_id, 1)
    assert blocked.status_code == 409 and "refunds still in progress" in text_of(blocked)
    admin.post(f"/orders/{order_id}/refunds/{row.id}/check")
    assert refunds_of(live_server, order_id)[0].state == "unknown"  # too early to say it was not made
    monkeypatch.setattr(refund_service, "UNKNOWN_GRACE", refund_service.UNKNOWN_GRACE * 0)
    admin.post(f"/orders/{order_id}/refunds/{row.id}/check")
    assert refunds_of(live_server, order_id)[0].state == "failed"
    assert ("success", "Refunded NT$1,000.") in flashes(refund(admin, order_id, 1000))
    assert order_row(live_server, order_id).state == "refunded"


def test_two_admins_at_once_cannot_refund_more_than_was_paid(live_server, admin):
    order_id = paid_order(live_server, admin, "mypay", items=((1000, 1),))
    forms = [confirm_fields(review(admin, order_id, 1000)) for _ in range(20)]  # 20 separate confirmations
    statuses = post_at_once(live_server, admin, order_id, forms)
    assert statuses.count(200) == 1 and statuses.count(409) == 19, statuses
    assert refund_calls(live_server, "mypay") == 1
    order = order_row(live_server, order_id)
    assert order.refunded_amount == 1000 == order.paid_amount
    assert [r.state for r in refunds_of(live_server, order_id)] == ["succeeded"]


# ---------------------------------------------------------------- O'Pay


def test_opay_refunds_are_recorded_by_hand_with_their_reference(live_server, admin):
    order_id = paid_order(live_server, admin, "opay", items=((300, 1),))
    page = text_of(admin.get(f"/orders/{order_id}/refunds"))
    assert "have no refund call" in page and "https://vendor-stage.opay.tw" in page
    missing = review(admin, order_id, 100)
    assert missing.status_code == 409 and "Enter the reference O'Pay's vendor back office gave" in text_of(missing)
    confirm = review(admin, order_id, 100, manual_reference="RF20250301001")
    assert "Nothing is sent to O'Pay" in text_of(confirm) and "RF20250301001" in confirm.text
    done = admin.post(f"/orders/{order_id}/refunds", confirm_fields(confirm))
    assert any("is recorded" in msg for _kind, msg in flashes(done))
    assert order_row(live_server, order_id).state == "partially_refunded"
    refund(admin, order_id, 200, manual_reference="RF20250301002")
    order = order_row(live_server, order_id)
    assert (order.state, order.refunded_amount) == ("refunded", 300)
    rows = refunds_of(live_server, order_id)
    assert [(r.manual, r.manual_reference, r.state) for r in rows] == [
        (True, "RF20250301001", "succeeded"),
        (True, "RF20250301002", "succeeded"),
    ]
    # O'Pay's query never shows refunds: a hand-recorded refund is not reported as a difference
    live = text_of(admin.get(f"/orders/{order_id}/transactions"))
    assert "data-differs" not in live and "Trade number" in live and "not yet paid out" in live


# ---------------------------------------------------------------- live transaction pages


def test_transactions_pages_show_what_each_provider_says_without_card_numbers(live_server, admin):
    with live_server.sandbox.ctx():
        sandbox_settings.set_oen_full_card_number(True)  # Oen sends the whole test card number back
    oen = paid_order(live_server, admin, "oen", items=((1200, 1),))
    mypay = paid_order(live_server, admin, "mypay", items=((1000, 1),))
    opay = paid_order(live_server, admin, "opay", items=((300, 1),))
    refund(admin, oen, 200)
    pages = {
        "oen": admin.get(f"/orders/{oen}/transactions"),
        "mypay": admin.get(f"/orders/{mypay}/transactions"),
        "opay": admin.get(f"/orders/{opay}/transactions"),
        "overview": admin.get("/transactions"),
        "refunds": admin.get(f"/orders/{oen}/refunds"),
        "order": admin.get(f"/orders/{oen}"),
    }
    for name, page in pages.items():
        assert page.status_code == 200, name
        assert_no_card_numbers(page.text)
    oen_page = text_of(pages["oen"])
    assert "Visa •••• 4242" in oen_page and "NT$36" in oen_page  # brand, last four, Oen's fee
    assert 'data-live-state="partially_refunded"' in oen_page and "data-differs" not in oen_page
    mypay_page = text_of(pages["mypay"])
    assert "CREDITCARD" in mypay_page and "prc 250" in mypay_page and "Instalments" in mypay_page
    opay_page = text_of(pages["opay"])
    assert "Handling charge" in opay_page and "Payout state" in opay_page
    assert re.search(r"<code>\d{20}</code>", opay_page)  # O'Pay's trade number, 20 digits
    overview = pages["overview"].text
    assert overview.count("data-checkout-id=") == 3 and 'data-status="ok"' in overview


def test_a_difference_is_shown_and_an_admin_applies_the_providers_state(live_server, admin):
    with live_server.sandbox.ctx():
        faults.set("mypay", "drop_next_callback", count=5)
    order_id = admin.new_order(items=((1000, 1),))
    admin.pay_mypay(admin.create_link(order_id, "mypay"), back=False)
    assert admin.order_state(order_id) == "awaiting_payment"
    page = text_of(admin.get(f"/orders/{order_id}/transactions"))
    assert "data-differs" in page and "Apply the provider's state" in page and 'data-live-state="paid"' in page
    staff = Browser(live_server.url)
    staff.login("staff@a.example")
    staff_page = text_of(staff.get(f"/orders/{order_id}/transactions"))
    assert "data-differs" in staff_page and "Apply the provider's state" not in staff_page
    with live_server.app.app_context():
        checkout_id = db.session.execute(db.select(Checkout.id).filter_by(order_id=order_id)).scalar_one()
    assert staff.post(f"/orders/{order_id}/transactions/{checkout_id}/apply").status_code == 403
    applied = admin.post(f"/orders/{order_id}/transactions/{checkout_id}/apply")
    assert ("success", "The provider's state was applied.") in flashes(applied)
    assert admin.order_state(order_id) == "paid"
    assert "data-differs" not in admin.get(f"/orders/{order_id}/transactions").text


def test_provider_errors_are_shown_not_500(live_server, admin):
    order_id = paid_order(live_server, admin, "mypay", items=((1000, 1),))
    with live_server.sandbox.ctx():
        faults.set("mypay", "fail_next", count=3)  # the query and both of its retries
    page = admin.get(f"/orders/{order_id}/transactions")
    assert page.status_code == 200 and "data-provider-error" in page.text
    assert "MyPay reported a server error (HTTP 500)" in text_of(page)  # the provider layer's message


def test_overview_renders_promptly_with_one_provider_hanging(live_server, admin):
    live_server.app.config.update(PROVIDER_TIMEOUT_S=5)
    live_server.sandbox.app.config.update(SANDBOX_HANG_S=6)
    mypay = paid_order(live_server, admin, "mypay", items=((1000, 1),))
    opay = paid_order(live_server, admin, "opay", items=((300, 1),))
    with live_server.sandbox.ctx():
        faults.set("opay", "hang_next")
    started = time.monotonic()
    page = admin.get("/transactions")
    elapsed = time.monotonic() - started
    assert page.status_code == 200 and elapsed < 4, elapsed
    rows = dict(re.findall(r'data-checkout-id="(\d+)" data-status="(\w+)"', page.text))
    with live_server.app.app_context():
        ids = {o: db.session.execute(db.select(Checkout.id).filter_by(order_id=o)).scalar_one() for o in (mypay, opay)}
    assert rows[str(ids[mypay])] == "ok" and rows[str(ids[opay])] == "unknown"
    assert "did not answer within 2 seconds" in text_of(page)
    # within the cache's lifetime the answered row is not asked again
    again = admin.get("/transactions")
    assert "data-cached" in again.text
