"""Every credential the tests use: the documents' published test accounts and the test merchants' own.

The one place these literals live; tests import them (only known-answer vectors and the files copied from the
documents spell them out, because there the literal is the point).
"""

from __future__ import annotations

# Published in the provider documents (and built into the sandbox as its test accounts), never production secrets.
MYPAY_AGENT_UID = "518169081001"
MYPAY_AGENT_KEY = "2MrhtRYeF9wKZ4bKwzZoL8aZf26pWzIG"
MYPAY_STORE_UID = "289151880002"
OPAY_MERCHANT_ID = "2000132"
OPAY_KEY = "5294y06JbISpM5x9"
OPAY_IV = "v77hoKGq4kWxNNIS"
OPAY_PLATFORM_ID = "2012441"
OPAY_PLATFORM_KEY = "bkuAEQufy2bpEng1"
OPAY_PLATFORM_IV = "B0lzARl9ZSdhW9jg"
OPAY_STAGE_MERCHANT = (OPAY_MERCHANT_ID, OPAY_KEY, OPAY_IV)
OPAY_STAGE_PLATFORM = (OPAY_PLATFORM_ID, OPAY_PLATFORM_KEY, OPAY_PLATFORM_IV)
# A MyPay agent key rotated to next (made up: the documents publish only the current one).
MYPAY_NEXT_KEY = "9xQ2mN8vB7cX6zL5kJ4hG3fD2sA1pO0i"

# Merchant A uses the documents' test store (MyPay) and stage merchant (O'Pay); merchant B has accounts of its own.
SHOP_A = {
    "oen": ("shopa", "oen-token-a"),
    "mypay": MYPAY_STORE_UID,
    "opay": OPAY_STAGE_MERCHANT,
}
SHOP_B = {
    "oen": ("shopb", "oen-token-b"),
    "mypay": "289151880003",
    "opay": ("2000133", "0123456789abcdef", "fedcba9876543210"),
}


def portal_settings(shop: dict) -> dict:
    """The shop's credentials as `upsert_merchant` takes them."""
    return {
        "oen_merchant_id": shop["oen"][0],
        "oen_token": shop["oen"][1],
        "mypay_store_uid": shop["mypay"],
        "opay_merchant_id": shop["opay"][0],
        "opay_hash_key": shop["opay"][1],
        "opay_hash_iv": shop["opay"][2],
    }


# The sandbox's own tests register shops whose MyPay and O'Pay accounts are not the documents' (those the sandbox
# always has as its published test accounts); their Oen accounts are the test merchants'.
SANDBOX_SHOP_A = {
    "oen": SHOP_A["oen"],
    "mypay": "111111110001",
    "opay": ("3000001", "0123456789abcdef", "fedcba9876543210"),
}
SANDBOX_SHOP_B = {
    "oen": SHOP_B["oen"],
    "mypay": "111111110002",
    "opay": ("3000002", "abcdef0123456789", "9876543210fedcba"),
}
# The sandbox's next MyPay agent key in its own tests (a rotation in progress).
SANDBOX_NEXT_AGENT_KEY = "N" * 32
