"""One form class per form; field rules on the form, cross-field rules in validate_<field> or validate()."""

from portal.forms.accounts import (  # noqa: F401
    ROLE_CHOICES,
    LoginForm,
    PasswordChangeForm,
    ProviderSettingsForm,
    TwoFactorCodeForm,
    TwoFactorOffForm,
    UserCreateForm,
    UserRoleForm,
    UserStatusForm,
)
from portal.forms.base import (  # noqa: F401
    Amount,
    Matches,
    PlainText,
    PortalForm,
    Required,
    amount_message,
)
from portal.forms.orders import (  # noqa: F401
    MAX_ITEM_ROWS,
    MAX_VOUCHER_ROWS,
    NOTE_MAX_CHARS,
    VOUCHER_KINDS,
    ItemDraft,
    ItemForm,
    OrderDraft,
    OrderForm,
    RowForm,
    RowList,
    VoucherDraft,
    VoucherForm,
    without_row,
)
from portal.forms.refunds import (  # noqa: F401
    REFUND_REASON_MAX_CHARS,
    RefundForm,
)
