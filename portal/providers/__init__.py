"""Provider clients behind one interface (base.Provider); configured per merchant through their constructors."""

from .base import (
    CallbackRequest,
    CheckoutLink,
    CheckoutRef,
    CheckoutRequest,
    InvalidCallback,
    LineItem,
    Provider,
    ProviderError,
    ProviderEvent,
    ProviderRejected,
    ProviderTransaction,
    ProviderUnavailable,
    RefundResult,
    RelayedPage,
    State,
    VoucherLine,
)
from .mypay import MyPayProvider
from .oen import OenProvider
from .opay import OPayProvider

# name -> class; the app builds instances per merchant with its settings and secrets.
REGISTRY: dict[str, type[Provider]] = {
    OenProvider.name: OenProvider,
    MyPayProvider.name: MyPayProvider,
    OPayProvider.name: OPayProvider,
}

__all__ = [
    "REGISTRY",
    "CallbackRequest",
    "CheckoutLink",
    "CheckoutRef",
    "CheckoutRequest",
    "InvalidCallback",
    "LineItem",
    "MyPayProvider",
    "OPayProvider",
    "OenProvider",
    "Provider",
    "ProviderError",
    "ProviderEvent",
    "ProviderRejected",
    "ProviderTransaction",
    "ProviderUnavailable",
    "RefundResult",
    "RelayedPage",
    "State",
    "VoucherLine",
]
