"""Logging in, passwords, users and a merchant's provider settings."""

from __future__ import annotations

from flask import current_app
from flask_babel import lazy_gettext as _l
from wtforms import (
    BooleanField,
    EmailField,
    PasswordField,
    SelectChoice,
    SelectField,
    StringField,
)
from wtforms.validators import DataRequired, Email, Length, Regexp, StopValidation

from portal.accounts import (
    MAX_REMINDER_HOURS,
    MIN_PASSWORD_CHARS,
    PROVIDER_ID_FIELDS,
    PROVIDER_SECRET_FIELDS,
    password_problem,
)
from portal.config import is_test_credential
from portal.forms.base import (
    Matches,
    PlainText,
    PortalForm,
    Required,
    _add_error,
    _blank_stops,
    _strip,
)


class LoginForm(PortalForm):
    email = EmailField(
        _l("E-mail"),
        validators=[
            DataRequired(_l("Please enter your e-mail.")),
            Length(max=254),
            # never a control character into the query (PostgreSQL refuses NUL with a server error)
            Regexp(
                r"^[^\x00-\x1f\x7f]*\Z",
                message=_l("Remove the control characters (invisible characters) from this text."),
            ),
        ],
    )
    password = PasswordField(
        _l("Password"), validators=[DataRequired(_l("Please enter your password.")), Length(max=1024)]
    )


ROLE_CHOICES = [SelectChoice("staff", _l("Staff")), SelectChoice("admin", _l("Admin"))]


# Browsers must neither fill in nor offer to remember a provider secret.
_SECRET_INPUT = {"autocomplete": "new-password", "spellcheck": "false"}


def _provider_id(max_chars: int) -> list:
    return [
        _blank_stops,
        Length(max=max_chars, message=_l("At most %(max)s characters.")),
        Matches(r"[A-Za-z0-9_-]+", _l("Use only letters, digits, - and _.")),
    ]


def _opay_cipher_secret() -> list:
    return [
        _blank_stops,
        Length(min=16, max=16, message=_l("Exactly 16 characters.")),
        Matches(r"[A-Za-z0-9]+", _l("Use only letters and digits.")),
    ]


def _lower(value):
    return value.lower() if isinstance(value, str) else value


def _text(value):
    return str(value) if isinstance(value, int) else value


class ProviderSettingsForm(PortalForm):
    """A merchant's provider settings; a secret left empty keeps its stored value, "remove" deletes it."""

    oen_merchant_id = StringField(
        _l("Oen merchant id"),
        filters=[_strip],
        validators=_provider_id(64),
        description=_l("Your Oen sub-domain: ming for https://ming.oen.tw."),
    )
    oen_token = PasswordField(
        _l("Oen CRM token"),
        filters=[_strip],
        validators=[
            _blank_stops,
            Length(min=8, max=4096, message=_l("Between %(min)s and %(max)s characters.")),
            Matches(r"[!-~]+", _l("Use only letters, digits and punctuation, with no spaces.")),
        ],
        render_kw=_SECRET_INPUT,
    )
    clear_oen_token = BooleanField(_l("Remove the stored Oen CRM token"))
    mypay_store_uid = StringField(
        _l("MyPay store uid"),
        filters=[_strip],
        validators=_provider_id(32),
        description=_l("The store (特約商店) uid MyPay gave you."),
    )
    opay_merchant_id = StringField(_l("O'Pay merchant id"), filters=[_strip], validators=_provider_id(32))
    opay_hash_key = PasswordField(
        _l("O'Pay HashKey"), filters=[_strip], validators=_opay_cipher_secret(), render_kw=_SECRET_INPUT
    )
    clear_opay_hash_key = BooleanField(_l("Remove the stored O'Pay HashKey"))
    opay_hash_iv = PasswordField(
        _l("O'Pay HashIV"), filters=[_strip], validators=_opay_cipher_secret(), render_kw=_SECRET_INPUT
    )
    clear_opay_hash_iv = BooleanField(_l("Remove the stored O'Pay HashIV"))
    # The shop as its customers see it, and the mails to its staff and customers.
    contact_phone = StringField(
        _l("Phone for customers"),
        filters=[_strip],
        validators=[
            _blank_stops,
            Matches(r"\+?[0-9][0-9 -]*[0-9]", _l("Use digits, with + - and spaces only, e.g. 02-2345-6789.")),
            PlainText(40),
        ],
        render_kw={"type": "tel", "autocomplete": "off"},
        description=_l("Shown with the shop's name on every page a customer sees, and in the mails."),
    )
    contact_email = StringField(
        _l("E-mail for customers"),
        filters=[_strip, _lower],
        validators=[_blank_stops, PlainText(254), Email(_l("Please enter a valid e-mail address."))],
        render_kw={"type": "email", "autocomplete": "off"},
        description=_l("Customers' replies to the portal's mails go here too."),
    )
    contact_note = StringField(
        _l("Note for customers"),
        filters=[_strip],
        validators=[_blank_stops, PlainText(200)],
        description=_l("For example your LINE ID or opening hours (at most 200 characters)."),
    )
    notify_email = StringField(
        _l("Notify staff of paid orders at"),
        filters=[_strip, _lower],
        validators=[_blank_stops, PlainText(254), Email(_l("Please enter a valid e-mail address."))],
        render_kw={"type": "email", "autocomplete": "off"},
        description=_l("An e-mail to this address for every paid order. Leave empty for none."),
    )
    reminder_hours = StringField(
        _l("Remind customers of an unpaid link after (hours)"),
        filters=[_strip, _text],  # the stored value is a number
        validators=[
            _blank_stops,  # left empty: unchanged
            Matches(r"[0-9]{1,3}", _l("Enter whole hours from 0 to %(max)s.", max=MAX_REMINDER_HOURS)),
        ],
        render_kw={"inputmode": "numeric", "autocomplete": "off"},
        description=_l(
            "One e-mail to the customer when the link is still unpaid this long after it was made; 0: none."
        ),
    )

    def validate_reminder_hours(self, field):
        if field.data and not field.errors and int(field.data) > MAX_REMINDER_HOURS:
            raise StopValidation(_l("Enter whole hours from 0 to %(max)s.", max=MAX_REMINDER_HOURS))

    def __init__(self, *args, merchant_id: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.merchant_id = merchant_id

    def validate(self, extra_validators=None):
        """Field rules; then a secret cannot be both replaced and removed, and ids belong to one merchant only."""
        ok = super().validate(extra_validators)
        for name in PROVIDER_SECRET_FIELDS:
            if self[name].data and self[f"clear_{name}"].data and not self[name].errors:
                _add_error(self[name], _l("Either enter a new value or remove the stored one, not both."))
                ok = False
        if current_app.config["PROVIDER_ENV"] == "production":
            for name in PROVIDER_SECRET_FIELDS:
                if is_test_credential(self[name].data) and not self[name].errors:
                    _add_error(
                        self[name],
                        _l("This is a public test value from the provider's documents; production needs your own."),
                    )
                    ok = False
        for name in PROVIDER_ID_FIELDS:
            if self[name].data and not self[name].errors and self._used_elsewhere(name, self[name].data):
                # Callbacks find the merchant by these ids, so two merchants may not share one.
                _add_error(self[name], _l("Another merchant on this portal already uses this id."))
                ok = False
        return ok

    def _used_elsewhere(self, column: str, value: str) -> bool:
        from portal.extensions import db
        from portal.models import Merchant

        stmt = db.select(Merchant.id).where(getattr(Merchant, column) == value, Merchant.id != self.merchant_id)
        return db.session.execute(stmt.limit(1)).first() is not None


def _email_in_use(email: str) -> bool:
    from portal.extensions import db
    from portal.models import User

    return db.session.execute(db.select(User.id).filter_by(email=email).limit(1)).first() is not None


class UserCreateForm(PortalForm):
    email = StringField(
        _l("E-mail"),
        filters=[_strip, _lower],
        validators=[
            Required(_l("Please enter an e-mail address.")),
            PlainText(254),
            Email(_l("Please enter a valid e-mail address.")),
        ],
        render_kw={"type": "email", "autocomplete": "off"},
    )
    role = SelectField(
        _l("Role"), choices=ROLE_CHOICES, default="staff", invalid_choice_message=_l("Choose admin or staff.")
    )
    password = PasswordField(
        _l("Initial password"),
        validators=[
            Required(_l("Please enter an initial password.")),
            Length(min=MIN_PASSWORD_CHARS, max=1024, message=_l("Between %(min)s and %(max)s characters.")),
        ],
        render_kw={"autocomplete": "new-password"},
        description=_l("At least %(min)s characters. Give it to the person privately.", min=MIN_PASSWORD_CHARS),
    )

    def validate_email(self, field):
        if _email_in_use(field.data):
            raise StopValidation(_l("This e-mail address is already in use."))

    def validate_password(self, field):
        if field.errors:  # too short or too long already said
            return
        problem = password_problem(field.data or "", user_inputs=(self.email.data or "",))
        if problem:
            raise StopValidation(problem)


class PasswordChangeForm(PortalForm):
    """A user's own new password: the current one first, the new one twice."""

    current_password = PasswordField(
        _l("Current password"),
        validators=[Required(_l("Please enter your current password."))],
        render_kw={"autocomplete": "current-password"},
    )
    new_password = PasswordField(
        _l("New password"),
        validators=[Required(_l("Please enter a new password.")), Length(max=1024)],
        render_kw={"autocomplete": "new-password"},
        description=_l("At least %(min)s characters, not easy to guess.", min=MIN_PASSWORD_CHARS),
    )
    confirm_password = PasswordField(
        _l("New password again"),
        validators=[Required(_l("Please enter the new password again."))],
        render_kw={"autocomplete": "new-password"},
    )

    def __init__(self, *args, user_inputs: tuple[str, ...] = (), **kwargs):
        super().__init__(*args, **kwargs)
        self.user_inputs = user_inputs

    def validate_new_password(self, field):
        problem = password_problem(field.data or "", user_inputs=self.user_inputs)
        if problem:
            raise StopValidation(problem)

    def validate_confirm_password(self, field):
        if field.data != self.new_password.data:
            raise StopValidation(_l("The two new passwords do not match."))


class UserRoleForm(PortalForm):
    role = SelectField(_l("Role"), choices=ROLE_CHOICES, invalid_choice_message=_l("Choose admin or staff."))


class UserStatusForm(PortalForm):
    """Deactivate or reactivate a user (the CSRF token is the only field)."""


class TwoFactorCodeForm(PortalForm):
    """A code from the authenticator app (six digits) or a recovery code."""

    code = StringField(
        _l("Code"),
        filters=[_strip],
        validators=[Required(_l("Please enter the code.")), Length(max=32)],
        render_kw={"autocomplete": "one-time-code", "inputmode": "numeric", "autofocus": True},
    )


class TwoFactorOffForm(PortalForm):
    password = PasswordField(
        _l("Password"),
        validators=[Required(_l("Please enter your current password."))],
        render_kw={"autocomplete": "current-password"},
    )
