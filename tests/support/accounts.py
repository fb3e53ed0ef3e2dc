"""The test merchants' provider credentials: configured in the portal and registered in the sandbox alike."""

from __future__ import annotations

# Merchant A uses the documents' test store (MyPay) and stage merchant (O'Pay); merchant B has accounts of its own.
SHOP_A = {
    "oen": ("shopa", "oen-token-a"),
    "mypay": "289151880002",
    "opay": ("2000132", "5294y06JbISpM5x9", "v77hoKGq4kWxNNIS"),
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
