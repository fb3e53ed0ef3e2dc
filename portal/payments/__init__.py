"""The checkout state machine, one concern a module; read downward:

locking (short write transactions, row locks) → snapshots (what a provider is given) → state (rank, the one
compare-and-set writer, the order's derived state) → attempts (open, deferred create, query, reconcile, expire) →
charges (saved cards) → callbacks (intake: read once, store, dedupe, verify, apply).

Rules kept here and nowhere else: state only moves forward by rank; every change (and every refused change) keeps
its evidence; no database transaction is held open across a provider call. Provider rules are asked of the
provider's class, never of its name.
"""

from portal.models import OPEN_STATES, PAID_STATES
from portal.payments.attempts import (
    CheckoutError,
    ReconcileSummary,
    open_checkout,
    provider_choices,
    query_provider,
    queryable,
    reconcile_open_checkouts,
    refresh_checkout,
    remember_provider_page,
    start_checkout,
    trade_page,
)
from portal.payments.callbacks import (
    NO_MERCHANT,
    NOT_READY,
    CallbackReply,
    read_callback,
    receive_callback,
    redact,
    store_callback,
)
from portal.payments.charges import (
    CHARGE_RETRY_AFTER,
    charge_again,
    charge_card,
    read_card_token,
    retry_charge,
    saved_cards,
)
from portal.payments.locking import locked_checkout, write_transaction
from portal.payments.redaction import REDACTED
from portal.payments.snapshots import checkout_ref, checkout_request, new_reference, provider_message
from portal.payments.state import (
    RANK,
    REQUERY_AFTER,
    apply_state,
    move,
    record,
    refresh_order,
    state_from_transactions,
)

__all__ = [
    "CHARGE_RETRY_AFTER",
    "NOT_READY",
    "NO_MERCHANT",
    "OPEN_STATES",
    "PAID_STATES",
    "RANK",
    "REDACTED",
    "REQUERY_AFTER",
    "CallbackReply",
    "CheckoutError",
    "ReconcileSummary",
    "apply_state",
    "charge_again",
    "charge_card",
    "checkout_ref",
    "checkout_request",
    "locked_checkout",
    "move",
    "new_reference",
    "open_checkout",
    "provider_choices",
    "provider_message",
    "query_provider",
    "queryable",
    "read_callback",
    "read_card_token",
    "receive_callback",
    "reconcile_open_checkouts",
    "record",
    "redact",
    "refresh_checkout",
    "refresh_order",
    "remember_provider_page",
    "retry_charge",
    "saved_cards",
    "start_checkout",
    "state_from_transactions",
    "store_callback",
    "trade_page",
    "write_transaction",
]
