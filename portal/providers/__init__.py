"""Provider clients behind one interface (base.Provider); configured per merchant through their constructors."""

from .base import (
    CallbackRequest,
    CheckoutLink,
    CheckoutRef,
    CheckoutRequest,
    InvalidCallback,
    LineItem,
    NonceStore,
    Provider,
    ProviderError,
    ProviderEvent,
    ProviderRejected,
    ProviderTransaction,
    ProviderUnavailable,
    RefundPolicy,
    RefundResult,
    RelayedPage,
    State,
    VoucherLine,
)
from .mypay import MyPayProvider
from .oen import OenProvider
from .opay import OPayProvider

# The one registry of providers: name -> class, in the order the interface offers them. The app builds instances
# per merchant with its settings and secrets; everything else asks a class for its rules.
REGISTRY: dict[str, type[Provider]] = {cls.name: cls for cls in (OenProvider, MyPayProvider, OPayProvider)}
NAMES: tuple[str, ...] = tuple(REGISTRY)


def provider_class(name: str) -> type[Provider]:
    """The class of the named provider; ValueError for a name the portal does not know."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown provider {name!r}") from None


__all__ = [
    "NAMES",
    "REGISTRY",
    "CallbackRequest",
    "CheckoutLink",
    "CheckoutRef",
    "CheckoutRequest",
    "InvalidCallback",
    "LineItem",
    "MyPayProvider",
    "NonceStore",
    "OPayProvider",
    "OenProvider",
    "Provider",
    "ProviderError",
    "ProviderEvent",
    "ProviderRejected",
    "ProviderTransaction",
    "ProviderUnavailable",
    "RefundPolicy",
    "RefundResult",
    "RelayedPage",
    "State",
    "VoucherLine",
    "provider_class",
]
