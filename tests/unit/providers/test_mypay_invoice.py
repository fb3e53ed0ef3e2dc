"""MyPay api/orders with the order's e-invoice data, in the fields and values of the document's tables (responses)."""

from __future__ import annotations

import pytest

from portal.invoices import Invoice
from portal.providers.mypay import MyPayProvider
from portal.providers.oen import OenProvider
from tests.support.accounts import MYPAY_AGENT_KEY, MYPAY_AGENT_UID, MYPAY_STORE_UID
from tests.support.providers import checkout_request, form_of

API = "https://pay.usecase.cc/api/agent"
ORDER_OK = {
    "code": "200",
    "msg": "資料正確",
    "url": "http://pay.usecase.cc/payment/95227.html",
    "uid": 95227,
    "key": "k",
}
INVOICE_KEYS = {
    "issue_invoice_state",
    "invoice_ratetype",
    "invoice_input_type",
    "invoice_cloud_type",
    "invoice_tax_id",
    "invoice_mobile_code",
    "invoice_natural_person",
    "invoice_love_code",
    "invoice_b2b_title",
    "invoice_b2b_id",
}


@pytest.fixture
def mypay() -> MyPayProvider:
    return MyPayProvider(API, MYPAY_AGENT_UID, MYPAY_AGENT_KEY, MYPAY_STORE_UID, timeout=6)


def sent(mypay, rsps, invoice) -> dict:
    """The decrypted api/orders body MyPay received for a checkout with this invoice."""
    rsps.post(API, json=ORDER_OK)
    mypay.create_checkout(checkout_request(invoice=invoice))
    service, data = mypay.decrypt_envelope(form_of(rsps.calls[-1].request))
    assert service["cmd"] == "api/orders"
    return data


@pytest.mark.parametrize(
    ("invoice", "fields"),
    [
        (
            Invoice("mobile", carrier="/ABC+123"),
            # 開立電子發票 1 · 應稅 1 · 雲端發票 1 · 手機條碼 2
            {
                "issue_invoice_state": 1,
                "invoice_ratetype": 1,
                "invoice_input_type": 1,
                "invoice_cloud_type": "2",
                "invoice_mobile_code": "/ABC+123",
            },
        ),
        (
            Invoice("citizen", carrier="AB12345678901234"),
            # 雲端發票 1 · 自然人憑證條碼 3
            {
                "issue_invoice_state": 1,
                "invoice_ratetype": 1,
                "invoice_input_type": 1,
                "invoice_cloud_type": "3",
                "invoice_natural_person": "AB12345678901234",
            },
        ),
        (
            Invoice("business", tax_id="28915188", title="高鉅科技股份有限公司"),
            # 雲端發票 1 with its 統一編號 (invoice_tax_id), sent by e-mail 4; 實體發票 3 is not for PayPage
            {
                "issue_invoice_state": 1,
                "invoice_ratetype": 1,
                "invoice_input_type": 1,
                "invoice_cloud_type": "4",
                "invoice_tax_id": "28915188",
            },
        ),
        (
            Invoice("donation", donation_code="919"),
            # 發票捐贈 2 with its 愛心碼
            {"issue_invoice_state": 1, "invoice_ratetype": 1, "invoice_input_type": 2, "invoice_love_code": "919"},
        ),
        # 紙本發票: the shop prints it; MyPay issues none (0 不開立電子發票)
        (Invoice("paper"), {"issue_invoice_state": 0}),
    ],
)
def test_create_order_carries_the_invoice_fields(mypay, rsps, invoice, fields):
    data = sent(mypay, rsps, invoice)
    assert {key: data[key] for key in INVOICE_KEYS if key in data} == fields
    assert data["cost"] == 1000 and data["order_id"] == "CK20240901A1"  # the rest of the order as before


def test_create_order_without_invoice_data_sends_no_invoice_field(mypay, rsps):
    data = sent(mypay, rsps, None)
    assert not INVOICE_KEYS & set(data)


def test_the_paper_input_type_is_never_sent(mypay, rsps):
    # The document: with PayPage "絕對不可以使用此模式" (invoice_input_type 3).
    for invoice in (Invoice("business", tax_id="28915188", title="A"), Invoice("paper")):
        assert sent(mypay, rsps, invoice).get("invoice_input_type") != 3


def test_oen_sends_no_invoice_data(rsps):
    oen = OenProvider(
        "https://payment-api.testing.oen.tw", "https://{merchant_id}.testing.oen.tw/checkout/{id}", "m", "t"
    )
    rsps.post("https://payment-api.testing.oen.tw/checkout-token", json={"code": "S0000", "data": {"id": "ck1"}})
    oen.create_checkout(checkout_request(invoice=Invoice("mobile", carrier="/ABC+123")))
    body = rsps.calls[-1].request.body
    body = body.decode() if isinstance(body, bytes) else body
    assert "ABC+123" not in body and "invoice" not in body
