"""django-import-export resources for members and orders (the admin's Import / Export buttons).

Members come in through `member_register`, the same service as the storefront API, one call per row: the resource
only turns cells into values and reports what is wrong with them, row by row, before anything is written. Django
-import-export runs every file twice, first as a dry run inside a transaction that is rolled back (the preview),
then for real when staff confirm.

Orders are exported here; the admin imports them with the order import engine (`members.importing.orders`), the
same code as `manage.py import_orders`, not with a resource.

Spreadsheet safety: a text cell that opens with = + - @, a tab or a carriage return can run as a formula when the
file is opened in Excel or WPS. Exports prefix such cells with an apostrophe (the export formats of
members.csv_export, every column), and imports take that apostrophe off again, so a member file exported, edited and
imported comes back as it was.
"""
from datetime import date, datetime

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import IntegrityError
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from import_export import fields, resources, widgets

from .csv_export import spreadsheet_unescape
from .errors import DomainError
from .importing.lifecycle import import_run_record
from .models import ImportRun, Member, Order
from .phones import InvalidPhone, phone_normalise
from .services import PROFILE_FIELDS, history_importing, member_register


class TextWidget(widgets.CharWidget):
    """Text cells: trimmed, numbers read as written (a phone typed as a number in Excel is not "1.38e10"), our own
    formula escaping undone on import (the export formats apply it, members.csv_export)."""

    def clean(self, value, row=None, **kwargs):
        if value is None:
            return ""
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return spreadsheet_unescape(str(value).strip())

    def render(self, value, obj=None, **kwargs):
        return "" if value is None else str(value)


class PhoneWidget(TextWidget):
    """Phones in any common spelling, stored in E.164 (members.phones); a number that is not one is a row error."""

    def clean(self, value, row=None, **kwargs):
        try:
            return phone_normalise(super().clean(value, row, **kwargs))
        except InvalidPhone as error:
            raise ValueError(f"{error} ({value})") from None


class YesNoWidget(widgets.BooleanWidget):
    """Consents: 1/0, true/false, yes/no, y/n, 是/否. Anything else is a row error, never a silent "no"."""

    TRUE_TEXTS = {"1", "true", "yes", "y", "t", "on", "是", "同意"}
    FALSE_TEXTS = {"0", "false", "no", "n", "f", "off", "否", "不同意"}

    def clean(self, value, row=None, **kwargs):
        if value is None or isinstance(value, bool):
            return value
        text = str(int(value) if isinstance(value, float) and value.is_integer() else value).strip().lower()
        if text in ("", "null", "none"):
            return None
        if text in self.TRUE_TEXTS:
            return True
        if text in self.FALSE_TEXTS:
            return False
        raise ValueError(_("“%(value)s” is not yes or no (use 1/0, true/false or yes/no).") % {"value": value})


class BirthdayWidget(widgets.DateWidget):
    """Dates as shops and spreadsheets write them: 1990-05-03, 1990/5/3, 19900503, 1990年5月3日, or a date cell."""

    INPUT_FORMATS = ("%Y-%m-%d", "%Y/%m/%d", "%Y.%m.%d", "%Y%m%d", "%Y年%m月%d日")

    def __init__(self):
        super().__init__(format="%Y-%m-%d")

    def clean(self, value, row=None, **kwargs):
        if value in (None, ""):
            return None
        if isinstance(value, datetime):
            return value.date()
        if isinstance(value, date):
            return value
        text = str(value).strip()
        for input_format in self.INPUT_FORMATS:
            try:
                parsed = datetime.strptime(text, input_format).date()
            except ValueError:
                continue
            if parsed > timezone.localdate():
                raise ValueError(_("%(value)s is in the future.") % {"value": text})
            return parsed
        raise ValueError(_("“%(value)s” is not a date; write it as YYYY-MM-DD.") % {"value": text})


def _text(attribute, column_name=None, readonly=False):
    return fields.Field(attribute=attribute, column_name=column_name or attribute, widget=TextWidget(),
                        readonly=readonly)


class MemberResource(resources.ModelResource):
    """Members by storefront customer id: new ids are registered, known ones get the profile fields the file gives.

    A blank cell leaves the member's value as it is (as a field left out of the API call does): a file cannot erase
    a profile by accident. The tier, balances and purchase figures are exported for reading only; importing them
    changes nothing (points and tiers have their own services)."""

    external_id = _text("external_id")
    email = _text("email")
    phone = fields.Field(attribute="phone", column_name="phone", widget=PhoneWidget())
    name = _text("name")
    birthday = fields.Field(attribute="birthday", column_name="birthday", widget=BirthdayWidget())
    region = _text("region")
    email_opt_in = fields.Field(attribute="email_opt_in", column_name="email_opt_in", widget=YesNoWidget())
    sms_opt_in = fields.Field(attribute="sms_opt_in", column_name="sms_opt_in", widget=YesNoWidget())
    tier = _text("tier__name", column_name="tier", readonly=True)
    points_balance = fields.Field(attribute="points_balance", column_name="points_balance", readonly=True,
                                  widget=widgets.IntegerWidget())
    lifetime_spend = fields.Field(attribute="lifetime_spend", column_name="lifetime_spend", readonly=True,
                                  widget=widgets.DecimalWidget())
    order_count = fields.Field(attribute="order_count", column_name="order_count", readonly=True,
                               widget=widgets.IntegerWidget())

    class Meta:
        model = Member
        fields = ("external_id", "email", "phone", "name", "birthday", "region", "email_opt_in", "sms_opt_in",
                  "tier", "points_balance", "lifetime_spend", "order_count")
        import_id_fields = ("external_id",)
        clean_model_instances = True
        skip_unchanged = True
        report_skipped = True

    @classmethod
    def get_display_name(cls):
        return str(_("Members"))

    def get_import_fields(self):
        # The read-only figures are not columns an import reads, nor shown in its preview.
        return [field for field in super().get_import_fields() if not field.readonly]

    def get_queryset(self):
        return Member.objects.select_related("tier")

    def import_field(self, field, instance, row, is_m2m=False, **kwargs):
        if self._given(row, field):
            super().import_field(field, instance, row, is_m2m, **kwargs)

    @staticmethod
    def _given(row, field) -> bool:
        value = row.get(field.column_name)
        return value is not None and str(value).strip() != ""

    def validate_instance(self, instance, import_validation_errors=None, validate_unique=True):
        """The model's own checks (email, lengths, a customer id) on the profile columns only: referral code, tier
        and balances are the services' business, and member_register settles uniqueness."""
        errors = dict(import_validation_errors or {})
        # A stored member's id is not checked against the character set: members from before it stay importable.
        checked = {*PROFILE_FIELDS} if instance.pk else {"external_id", *PROFILE_FIELDS}
        exclude = [f.name for f in Member._meta.concrete_fields if f.name not in checked] + list(errors)
        try:
            instance.full_clean(exclude=exclude, validate_unique=False, validate_constraints=False)
        except ValidationError as error:
            errors = error.update_error_dict(errors)
        if errors:
            raise ValidationError(errors)

    def save_instance(self, instance, is_create, row, **kwargs):
        """Write through member_register (the storefront API's service) with the profile fields the row gives.
        Domain errors and races become the row's errors in the preview."""
        profile = {
            name: getattr(instance, name)
            for name in PROFILE_FIELDS
            if name in self.fields and self._given(row, self.fields[name])
        }
        try:
            with history_importing():  # existing customers brought over: no welcome, no message
                member, _created = member_register(external_id=instance.external_id, **profile)
        except DomainError as error:
            raise ValidationError({error.field or NON_FIELD_ERRORS: [str(error.detail)]}) from error
        except IntegrityError as error:
            raise ValidationError({NON_FIELD_ERRORS: [_("The member could not be saved: %(error)s") % {
                "error": error}]}) from error
        instance.pk = member.pk
        instance._state.adding = False

    def after_import(self, dataset, result, **kwargs):
        """A confirmed import is recorded as an ImportRun (kind members), beside the order imports."""
        super().after_import(dataset, result, **kwargs)
        if kwargs.get("dry_run") or result.has_errors() or result.has_validation_errors():
            return
        user = kwargs.get("user")
        totals = result.totals
        import_run_record(
            kind=ImportRun.Kind.MEMBERS,
            source=ImportRun.Source.ADMIN,
            file_name=(kwargs.get("file_name") or "members")[:255],
            sha256=kwargs.get("file_sha256", ""),
            options={"updated": totals["update"], "unchanged": totals["skip"]},
            rows_read=result.total_rows,
            created=totals["new"],
            members_created=totals["new"],
            created_by=user if getattr(user, "pk", None) else None,
        )


class OrderResource(resources.ModelResource):
    """Orders for export, in the columns the order import reads (an export imports again as duplicates)."""

    order_id = _text("order_id")
    customer_id = _text("member__external_id", column_name="customer_id", readonly=True)
    placed_at = fields.Field(attribute="placed_at", column_name="placed_at",
                             widget=widgets.DateTimeWidget(format="%Y-%m-%d %H:%M:%S"))
    amount = fields.Field(attribute="amount", column_name="amount", widget=widgets.DecimalWidget())
    currency = _text("currency")
    quantity = fields.Field(attribute="quantity", column_name="quantity", widget=widgets.IntegerWidget())
    category = _text("category")
    channel = _text("channel")
    status = _text("status")
    refunded_amount = fields.Field(attribute="refunded_amount", column_name="refunded_amount",
                                   widget=widgets.DecimalWidget())

    class Meta:
        model = Order
        fields = ("order_id", "customer_id", "placed_at", "amount", "currency", "quantity", "category", "channel",
                  "status", "refunded_amount")

    @classmethod
    def get_display_name(cls):
        return str(_("Orders"))

    def get_queryset(self):
        return Order.objects.select_related("member")
