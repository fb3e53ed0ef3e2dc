"""MyPay agent simulator, driven with raw requests built from the document (seed 002), and with its reference code."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
import uuid
from pathlib import Path
from urllib.parse import quote, urljoin

import pytest
import requests

from sandbox import callbacks, faults
from sandbox.extensions import db
from sandbox.models import SandboxCallback
from tests.support.accounts import MYPAY_STORE_UID

FIXTURES = Path(__file__).parent / "fixtures"
DOC_STORE = MYPAY_STORE_UID


def doc_order(sandbox, order_id=None, **changes):
    """The document's api/orders example (item 1000, paid voucher 50, free voucher 50, cost 900), fresh serials."""
    serial = uuid.uuid4().hex[:10]
    data = {
        "store_uid": DOC_STORE,
        "items": [{"id": "1", "name": "好棒棒麻辣鍋湯包", "cost": "1000", "amount": "1", "total": "1000"}],
        "user_id": "userid",
        "order_id": order_id or uuid.uuid4().hex[:20],
        "ip": "192.168.0.1",
        "pfn": "0",
        "cost": 900,
        "agent_sms_fee_type": 1,
        "agent_charge_fee_type": 1,
        "agent_charge_fee": 90,
        "voucher_type": "1",
        "voucher_paid": [
            {
                "product_id": "P01",
                "serial_number": f"P{serial}",
                "name": "好食券",
                "cost": 50,
                "issuer": "1",
                "refund_return_type": "3",
            }
        ],  # fmt: skip
        "voucher_free": [
            {"product_id": "F01", "serial_number": f"F{serial}", "name": "VIP免費券", "cost": 50, "issuer": "1"}
        ],
        "voucher_invoice_type": "1",
        "success_returl": f"{sandbox.url}/shop/ok",
        "failure_returl": f"{sandbox.url}/shop/ko",
        "echo_0": "checkout-42",
    }
    data.update(changes)
    return data


def plain_order(sandbox, **changes):
    """An order without vouchers (voucher mode off)."""
    data = doc_order(sandbox, cost=1060, voucher_type="0", voucher_paid=[], voucher_free=[])
    data["items"] = data["items"] + [{"id": "ship", "name": "運費", "cost": 60, "amount": 1, "total": 60}]
    data.update(changes)
    return data


def create(sandbox, wire, data):
    answer = wire.mypay_post(sandbox.url, "api/orders", data)
    assert answer.status_code == 200
    return {**answer.json(), "paid_vouchers": [(v["product_id"], v["serial_number"]) for v in data["voucher_paid"]]}


class PayPage:
    """A customer's browser on the PayPage."""

    def __init__(self, sandbox, wire, created):
        self.sandbox, self.wire, self.uid = sandbox, wire, created["uid"]
        self.session = requests.Session()
        self.page = self.session.get(created["url"], timeout=10)
        assert self.page.status_code == 200

    def post(self, path, **form):
        form["csrf_token"] = self.wire.csrf_token(self.page.text)
        url = f"{self.sandbox.url}/mypay/payment/{self.uid}/{path}"
        answer = self.session.post(url, data=form, allow_redirects=False, timeout=10)
        if answer.status_code == 303:
            self.page = self.session.get(urljoin(self.sandbox.url, answer.headers["Location"]), timeout=10)
        return answer

    def card(self, number, expiry, cvc):
        return self.post("pay", method="CREDITCARD", card_number=number, expiry=expiry, cvc=cvc)


def query(sandbox, wire, created, key=None):
    return wire.mypay_post(sandbox.url, "api/queryorder", {"uid": created["uid"], "key": key or created["key"]}).json()


def refund(sandbox, wire, created, cost, vouchers=(), store=DOC_STORE, **more):
    data = {"store_uid": store, "uid": created["uid"], "key": created["key"], "cost": cost, **more}
    if vouchers:
        data["voucher_paid"] = [{"product_id": p, "serial_number": s} for p, s in vouchers]
    return wire.mypay_post(sandbox.url, "api/refund", data).json()


def callbacks_of(sandbox):
    return [item.form for item in sandbox.receiver.of("mypay")]


class TestOrders:
    def test_the_documents_example_is_accepted(self, sandbox, wire):
        created = create(sandbox, wire, doc_order(sandbox))
        assert created["code"] == "200" and created["msg"] == "資料正確"
        assert created["url"] == f"{sandbox.url}/mypay/payment/{created['uid']}.html"
        assert isinstance(created["uid"], int) and len(created["key"]) == 32

    def test_a_json_body_is_accepted_as_in_the_javascript_sample(self, sandbox, wire):
        answer = wire.mypay_post(sandbox.url, "api/orders", doc_order(sandbox), as_json=True)
        assert answer.json()["code"] == "200"

    @pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
    def test_the_documents_javascript_reference_code_is_accepted(self, sandbox, tmp_path):
        code = (FIXTURES / "mypay_agent_voucher.js").read_text()
        code = code.replace("require('https')", "require('http')")
        code = code.replace("https://pay.usecase.cc/api/agent", f"{sandbox.url}/mypay/api/agent")
        script = tmp_path / "agent.js"
        script.write_text(code)
        run = subprocess.run(["node", str(script)], capture_output=True, text=True, timeout=30, check=True)
        answer = json.loads(run.stdout)
        assert answer["code"] == "200" and answer["uid"] and answer["url"].endswith(f"/{answer['uid']}.html")

    def test_the_documents_python_reference_code_is_accepted(self, sandbox):
        code = (FIXTURES / "mypay_agent_voucher_sample.txt").read_text()
        code = code.replace("https://pay.usecase.cc/api/agent", f"{sandbox.url}/mypay/api/agent")
        code = code.replace('"1234567890"', '"python-sample-1"')
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, "mypay_agent_voucher_sample", "exec"), {"__name__": "sample"})  # noqa: S102
        assert json.loads(out.getvalue())["code"] == "200"

    def test_the_next_agent_key_is_accepted_while_keys_rotate(self, sandbox, wire):
        answer = wire.mypay_post(sandbox.url, "api/orders", doc_order(sandbox), key=wire.NEXT_AGENT_KEY)
        assert answer.json()["code"] == "200"

    def test_shipping_sent_as_an_item_counts_in_cost(self, sandbox, wire):
        assert create(sandbox, wire, plain_order(sandbox))["code"] == "200"

    @pytest.mark.parametrize(
        ("change", "message"),
        [
            ({"cost": 950}, "cost"),
            ({"cost": 1000}, "cost"),
            ({"store_uid": "999999999999"}, "特約商店"),
            ({"ip": ""}, "ip"),
            ({"items": []}, "items"),
            ({"voucher_type": "0"}, "voucher_type"),
            ({"items": [{"id": "1", "name": "x", "cost": "500", "amount": "2", "total": "900"}], "cost": 800}, "total"),
            ({"pfn": "NOSUCH"}, "pfn"),
            ({"order_id": "x" * 51}, "order_id"),
        ],
    )
    def test_bad_orders_are_refused_with_code_100(self, sandbox, wire, change, message):
        created = create(sandbox, wire, doc_order(sandbox, **change))
        assert created["code"] == "100" and message in created["msg"]
        assert "url" not in created

    def test_bad_key_and_wrong_agent_uid_are_refused(self, sandbox, wire):
        bad_key = wire.mypay_post(sandbox.url, "api/orders", doc_order(sandbox), key="x" * 32).json()
        assert bad_key["code"] == "100" and "解密" in bad_key["msg"]
        wrong_uid = wire.mypay_post(sandbox.url, "api/orders", doc_order(sandbox), agent_uid="518169081002").json()
        assert wrong_uid["code"] == "100"

    def test_a_reused_order_id_is_refused(self, sandbox, wire):
        assert create(sandbox, wire, doc_order(sandbox, order_id="SAME-1"))["code"] == "200"
        again = create(sandbox, wire, doc_order(sandbox, order_id="SAME-1"))
        assert again["code"] == "100" and "重複" in again["msg"]

    def test_a_value_url_encoded_twice_is_refused(self, sandbox, wire):
        fields = {
            "agent_uid": wire.AGENT_UID,
            "service": quote(wire.mypay_encrypt({"service_name": "api", "cmd": "api/orders"}), safe=""),
            "encry_data": quote(wire.mypay_encrypt(doc_order(sandbox)), safe=""),
        }
        answer = requests.post(f"{sandbox.url}/mypay/api/agent", data=fields, timeout=10).json()
        assert answer["code"] == "100"


class TestPayPage:
    def test_test_card_pays_and_the_callback_carries_the_transaction(self, sandbox, wire):
        created = create(sandbox, wire, doc_order(sandbox))
        answer = PayPage(sandbox, wire, created).card("4761120010000492", "1122", "533")
        assert answer.status_code == 302 and answer.headers["Location"] == f"{sandbox.url}/shop/ok"
        (callback,) = sandbox.receiver.of("mypay")
        assert callback.content_type.startswith("application/x-www-form-urlencoded")
        fields = callback.form
        assert fields["uid"] == str(created["uid"]) and fields["key"] == created["key"] and fields["prc"] == "250"
        assert fields["cost"] == "900" and fields["actual_cost"] == "900" and fields["pfn"] == "CREDITCARD"
        assert fields["cardno"] == "476112******0492" and fields["echo_0"] == "checkout-42"
        assert len(fields["finishtime"]) == 14 and fields["acode"]
        assert json.loads(fields["voucher_paid"])[0]["serial_number"] == created["paid_vouchers"][0][1]
        status = query(sandbox, wire, created)
        assert status["prc"] == "250" and status["uid"] == created["uid"] and status["refund_order"] == []

    def test_3d_password_decides_and_failure_card_fails(self, sandbox, wire):
        for password, prc in (("nccc1234", "250"), ("wrong", "300")):
            created = create(sandbox, wire, doc_order(sandbox))
            page = PayPage(sandbox, wire, created)
            assert page.card("4938170130000003", "1228", "985").status_code == 303
            assert "3D" in page.page.text
            page.post("3ds", password=password)
            assert query(sandbox, wire, created)["prc"] == prc
        created = create(sandbox, wire, doc_order(sandbox))
        answer = PayPage(sandbox, wire, created).card("5204247750001471", "1122", "111")
        assert answer.headers["Location"] == f"{sandbox.url}/shop/ko"
        assert query(sandbox, wire, created)["prc"] == "300"
        assert [c["prc"] for c in callbacks_of(sandbox)] == ["250", "300", "300"]

    def test_wrong_cvc_or_unlisted_card_fails(self, sandbox, wire):
        for number, expiry, cvc in (("4761120010000492", "1122", "000"), ("4242424242424242", "1230", "123")):
            created = create(sandbox, wire, doc_order(sandbox))
            PayPage(sandbox, wire, created).card(number, expiry, cvc)
            assert query(sandbox, wire, created)["prc"] == "300"

    def test_atm_stays_at_270_until_the_customer_pays(self, sandbox, wire):
        created = create(sandbox, wire, doc_order(sandbox))
        page = PayPage(sandbox, wire, created)
        page.post("pay", method="E_COLLECTION")
        status = query(sandbox, wire, created)
        assert status["prc"] == "270" and json.loads(status["result_content"])["PinCode"]
        assert "PinCode" in page.page.text
        page.post("offline", outcome="paid")
        assert query(sandbox, wire, created)["prc"] == "250"
        assert [c["prc"] for c in callbacks_of(sandbox)] == ["270", "250"]

    def test_store_code_stays_at_260_until_it_expires(self, sandbox, wire):
        created = create(sandbox, wire, doc_order(sandbox))
        page = PayPage(sandbox, wire, created)
        page.post("pay", method="CSTORECODE")
        assert query(sandbox, wire, created)["prc"] == "260"
        page.post("offline", outcome="expire")
        assert [c["prc"] for c in callbacks_of(sandbox)] == ["260", "380"]

    def test_abandon_and_forms_without_csrf(self, sandbox, wire):
        created = create(sandbox, wire, doc_order(sandbox))
        no_token = requests.post(f"{sandbox.url}/mypay/payment/{created['uid']}/pay", data={"method": "abandon"})
        assert no_token.status_code == 400
        PayPage(sandbox, wire, created).post("pay", method="abandon")
        assert query(sandbox, wire, created)["prc"] == "A0002"

    def test_callbacks_as_json_when_configured(self, sandbox_factory, wire):
        sandbox = sandbox_factory(SANDBOX_MYPAY_CALLBACK_FORMAT="json")
        created = create(sandbox, wire, doc_order(sandbox))
        PayPage(sandbox, wire, created).card("4761120010000492", "1122", "533")
        (callback,) = sandbox.receiver.of("mypay")
        assert callback.json["prc"] == "250" and callback.json["voucher_paid"][0]["product_id"] == "P01"


class TestCallbackResends:
    def pay(self, sandbox, wire):
        created = create(sandbox, wire, doc_order(sandbox))
        PayPage(sandbox, wire, created).card("4761120010000492", "1122", "533")
        return created

    def test_resent_until_8888(self, sandbox, wire):
        sandbox.receiver.answer_next("mypay", "OK", "error", "", "0000")
        self.pay(sandbox, wire)
        assert len(callbacks_of(sandbox)) == 5
        with sandbox.ctx():
            (callback,) = db.session.execute(db.select(SandboxCallback)).scalars()
            assert (callback.state, callback.attempts) == ("delivered", 5)

    def test_five_times_in_all(self, sandbox, wire):
        sandbox.receiver.answer_next("mypay", *["no"] * 6)
        self.pay(sandbox, wire)
        assert len(callbacks_of(sandbox)) == 5
        with sandbox.ctx():
            (callback,) = db.session.execute(db.select(SandboxCallback)).scalars()
            assert callback.state == "failed"

    def test_dropped_then_resent_from_the_console(self, sandbox, wire):
        with sandbox.ctx():
            faults.set("mypay", "drop_next_callback")
        self.pay(sandbox, wire)
        assert callbacks_of(sandbox) == []
        with sandbox.ctx():
            (callback,) = db.session.execute(db.select(SandboxCallback)).scalars()
            assert callback.state == "dropped"
            callbacks.resend(callback.id)
        assert [c["prc"] for c in callbacks_of(sandbox)] == ["250"]

    def test_the_console_tells_a_callback_resent_by_hand_and_its_journal_reads_taipei_time(self, sandbox, wire):
        """A callback resent from the console read 「2 / 1」 attempts, and the journal's times were UTC while the mail
        pages (and the providers' own fields) use Taiwan's clock."""
        from sandbox.console import _taipei
        from sandbox.models import SandboxExchange

        with sandbox.ctx():
            faults.set("mypay", "drop_next_callback")
        self.pay(sandbox, wire)
        with sandbox.ctx():
            (callback,) = db.session.execute(db.select(SandboxCallback)).scalars()
            for _ in range(callback.max_attempts + 1):  # more than MyPay's own tries (5)
                callbacks.resend(callback.id)
            db.session.expire_all()
            callback = db.session.get(SandboxCallback, callback.id)
            assert callback.attempts > callback.max_attempts
            attempts, maximum = callback.attempts, callback.max_attempts
            last = db.session.execute(db.select(SandboxExchange).order_by(SandboxExchange.id.desc())).scalars().first()
            shown = _taipei(last.created_at).strftime("%H:%M:%S")
            utc = last.created_at.strftime("%H:%M:%S")
        page = requests.get(f"{sandbox.url}/", timeout=10).text
        assert f"{attempts} / {maximum}" not in page and f'{attempts} <span class="sb-muted">(重送 resent)' in page
        assert '<span class="sb-time" title="' in page and f"{shown}</span>" in page and f">{utc}</span>" not in page
        assert "台北時間 Asia/Taipei" in page

    def test_an_empty_list_says_so(self, sandbox):
        page = requests.get(f"{sandbox.url}/", timeout=10).text
        assert page.count("尚無 none yet") >= 4  # the callbacks, and the Oen, MyPay and O'Pay lists

    def test_resends_happen_in_the_background(self, sandbox_factory, wire):
        sandbox = sandbox_factory(SANDBOX_CALLBACK_SYNC=False, SANDBOX_CALLBACK_RETRY_DELAY_S=0.05)
        sandbox.receiver.answer_next("mypay", "no", "no")
        self.pay(sandbox, wire)
        import time

        deadline = time.monotonic() + 10
        while len(callbacks_of(sandbox)) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(callbacks_of(sandbox)) == 3


class TestQueryAndRefund:
    def paid(self, sandbox, wire, data):
        created = create(sandbox, wire, data)
        PayPage(sandbox, wire, created).card("4761120010000492", "1122", "533")
        return created

    def test_query_needs_the_right_key(self, sandbox, wire):
        created = create(sandbox, wire, doc_order(sandbox))
        assert query(sandbox, wire, created)["prc"] == "200"
        assert query(sandbox, wire, created, key="0" * 32)["code"] == "100"

    def test_voucher_mode_refund_is_full_with_every_paid_voucher(self, sandbox, wire):
        created = self.paid(sandbox, wire, doc_order(sandbox))
        partial = refund(sandbox, wire, created, 500, created["paid_vouchers"])
        assert partial["code"] == "B500" and "全額" in partial["msg"]
        no_vouchers = refund(sandbox, wire, created, 900)
        assert no_vouchers["code"] == "B500"
        wrong_store = refund(sandbox, wire, created, 900, created["paid_vouchers"], store="111111110001")
        assert wrong_store["code"] == "B500"
        done = refund(sandbox, wire, created, 900, created["paid_vouchers"], invoice_state=6)
        assert done["code"] == "B200" and done["uid"] == str(created["uid"]) and done["key"] == created["key"]
        row = done["row_data"]
        assert row["prc"] == "230" and row["cost"] == 900 and row["refund_type"] == 1 and row["refund_uid"]
        assert row["voucher_paid"][0]["serial_number"] == created["paid_vouchers"][0][1]
        assert refund(sandbox, wire, created, 900, created["paid_vouchers"])["code"] == "B500"
        status = query(sandbox, wire, created)
        assert [(r["prc"], r["cost"]) for r in status["refund_order"]] == [("230", 900)]

    def test_without_vouchers_partial_refunds_up_to_the_paid_amount(self, sandbox, wire):
        created = self.paid(sandbox, wire, plain_order(sandbox, store_uid="111111110001"))
        store = "111111110001"
        assert refund(sandbox, wire, created, 60, store=store)["code"] == "B200"
        assert refund(sandbox, wire, created, 1001, store=store)["code"] == "B500"
        assert refund(sandbox, wire, created, 1000, store=store)["code"] == "B200"
        assert refund(sandbox, wire, created, 1, store=store)["code"] == "B500"
        assert len(query(sandbox, wire, created)["refund_order"]) == 2

    def test_unpaid_order_and_wrong_key_are_refused(self, sandbox, wire):
        created = create(sandbox, wire, doc_order(sandbox))
        assert refund(sandbox, wire, created, 900, created["paid_vouchers"])["code"] == "B500"
        created["key"] = "f" * 32
        assert refund(sandbox, wire, created, 900, created["paid_vouchers"])["code"] == "B500"


def test_a_voucher_spent_on_a_paid_order_cannot_be_used_again(sandbox, wire):
    first = doc_order(sandbox)
    created = create(sandbox, wire, first)
    PayPage(sandbox, wire, created).card("4761120010000492", "1122", "533")
    again = create(sandbox, wire, doc_order(sandbox, voucher_paid=first["voucher_paid"]))
    assert again["code"] == "100" and "已於訂單" in again["msg"]
    unpaid = doc_order(sandbox)
    assert create(sandbox, wire, unpaid)["code"] == "200"
    assert create(sandbox, wire, doc_order(sandbox, voucher_paid=unpaid["voucher_paid"]))["code"] == "200"
