"""Forms of the campaigns layer.

`SegmentFiltersForm` edits and validates a segment's filters (the JSON schema above campaigns.models.Segment): the
admin's segment page is built on it, and a campaign that targets members by filters can reuse it. `to_filters()`
gives the JSON to store, `initial_from_filters()` the form's initial values from stored JSON.
"""
import calendar
from datetime import date
from decimal import Decimal

from django import forms
from django.core.cache import cache
from django.utils.text import capfirst
from django.utils.translation import gettext_lazy as _
from unfold.widgets import (
    UnfoldAdminCheckboxSelectMultipleWidget,
    UnfoldAdminDecimalFieldWidget,
    UnfoldAdminIntegerFieldWidget,
    UnfoldAdminSelectMultipleWidget,
    UnfoldAdminSelectWidget,
    UnfoldAdminSingleDateWidget,
)

from members.models import ActivityStatus, Member, RfmSegment, Tag
from tiers.models import Tier

from .models import Segment

REGION_CHOICES_CACHE_SECONDS = 600
REGION_CHOICES_MAX = 500

CONSENT_CHOICES = [("", _("any")), ("yes", _("given")), ("no", _("not given"))]
CONSENT_TO_JSON = {"": None, "yes": True, "no": False}
JSON_TO_CONSENT = {None: "", True: "yes", False: "no"}

# (min field, max field) pairs: the min may not exceed the max.
RANGES = (
    ("days_since_last_order_min", "days_since_last_order_max"),
    ("order_count_min", "order_count_max"),
    ("lifetime_spend_min", "lifetime_spend_max"),
    ("joined_from", "joined_to"),
)
# The form's fields, in the order of the JSON schema.
FILTER_FIELDS = (
    "tiers",
    "rfm_segments",
    "activity_statuses",
    "days_since_last_order_min",
    "days_since_last_order_max",
    "order_count_min",
    "order_count_max",
    "lifetime_spend_min",
    "lifetime_spend_max",
    "regions",
    "tags",
    "birthday_months",
    "joined_from",
    "joined_to",
    "email_opt_in",
    "sms_opt_in",
)


def region_choices() -> list[tuple[str, str]]:
    """The regions members have, for the region picker. A DISTINCT over the members (by the region index), cached
    for a few minutes, so a new region shows up a little later."""
    key = "campaigns:segment-region-choices"
    regions = cache.get(key)
    if regions is None:
        regions = list(
            Member.objects.exclude(region="").order_by("region").values_list("region", flat=True).distinct()[
                :REGION_CHOICES_MAX
            ]
        )
        cache.set(key, regions, REGION_CHOICES_CACHE_SECONDS)
    return [(region, region) for region in regions]


def _int_widget():
    return UnfoldAdminIntegerFieldWidget(attrs={"min": 0})


class SegmentFiltersForm(forms.Form):
    tiers = forms.ModelMultipleChoiceField(
        label=_("tiers"), queryset=Tier.objects.order_by("rank"), to_field_name="code", required=False,
        widget=UnfoldAdminCheckboxSelectMultipleWidget, help_text=_("The member's current tier is one of these."),
    )
    rfm_segments = forms.MultipleChoiceField(
        label=_("RFM segments"), choices=RfmSegment.choices, required=False,
        widget=UnfoldAdminCheckboxSelectMultipleWidget,
    )
    activity_statuses = forms.MultipleChoiceField(
        label=_("activity"), choices=ActivityStatus.choices, required=False,
        widget=UnfoldAdminCheckboxSelectMultipleWidget,
    )
    days_since_last_order_min = forms.IntegerField(
        label=_("days since last order: at least"), min_value=0, max_value=36500, required=False, widget=_int_widget()
    )
    days_since_last_order_max = forms.IntegerField(
        label=_("days since last order: at most"), min_value=0, max_value=36500, required=False, widget=_int_widget(),
        help_text=_("Members who never ordered are left out as soon as either bound is set."),
    )
    order_count_min = forms.IntegerField(
        label=_("orders: at least"), min_value=0, required=False, widget=_int_widget()
    )
    order_count_max = forms.IntegerField(label=_("orders: at most"), min_value=0, required=False, widget=_int_widget())
    lifetime_spend_min = forms.DecimalField(
        label=_("lifetime spend: at least"), min_value=0, max_digits=14, decimal_places=2, required=False,
        widget=UnfoldAdminDecimalFieldWidget,
    )
    lifetime_spend_max = forms.DecimalField(
        label=_("lifetime spend: at most"), min_value=0, max_digits=14, decimal_places=2, required=False,
        widget=UnfoldAdminDecimalFieldWidget,
    )
    regions = forms.MultipleChoiceField(label=_("regions"), required=False, widget=UnfoldAdminSelectMultipleWidget)
    tags = forms.ModelMultipleChoiceField(
        label=_("tags"), queryset=Tag.objects.order_by("name"), required=False,
        widget=UnfoldAdminSelectMultipleWidget, help_text=_("Members with any of these tags."),
    )
    birthday_months = forms.TypedMultipleChoiceField(
        label=_("birthday month"), choices=[(m, calendar.month_name[m]) for m in range(1, 13)], coerce=int,
        required=False, widget=UnfoldAdminCheckboxSelectMultipleWidget,
    )
    joined_from = forms.DateField(label=_("joined from"), required=False, widget=UnfoldAdminSingleDateWidget)
    joined_to = forms.DateField(
        label=_("joined until"), required=False, widget=UnfoldAdminSingleDateWidget, help_text=_("Inclusive.")
    )
    email_opt_in = forms.ChoiceField(
        label=_("email consent"), choices=CONSENT_CHOICES, required=False, widget=UnfoldAdminSelectWidget
    )
    sms_opt_in = forms.ChoiceField(
        label=_("SMS consent"), choices=CONSENT_CHOICES, required=False, widget=UnfoldAdminSelectWidget
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in FILTER_FIELDS:  # labels read as the admin's own (model fields get capfirst there too)
            self.fields[name].label = capfirst(self.fields[name].label)
        # The regions members have, plus any a saved segment names that no member has any more (still shown).
        choices = region_choices()
        known = {value for value, _label in choices}
        saved = self.initial.get("regions") or []
        submitted = self.data.getlist("regions") if hasattr(self.data, "getlist") else self.data.get("regions") or []
        extra = [value for value in [*saved, *submitted] if value and value not in known]
        self.fields["regions"].choices = [*choices, *((value, value) for value in dict.fromkeys(extra))]

    def clean(self):
        cleaned = super().clean()
        for low, high in RANGES:
            if cleaned.get(low) is not None and cleaned.get(high) is not None and cleaned[low] > cleaned[high]:
                self.add_error(high, _("The upper bound is below the lower bound."))
        return cleaned

    def to_filters(self) -> dict:
        """The cleaned filters as the JSON a Segment stores: only the conditions that are set."""
        data = self.cleaned_data
        filters = {
            "tiers": [tier.code for tier in data.get("tiers") or []],
            "rfm_segments": list(data.get("rfm_segments") or []),
            "activity_statuses": list(data.get("activity_statuses") or []),
            "regions": list(data.get("regions") or []),
            "tags": [tag.pk for tag in data.get("tags") or []],
            "birthday_months": sorted(data.get("birthday_months") or []),
            "email_opt_in": CONSENT_TO_JSON[data.get("email_opt_in") or ""],
            "sms_opt_in": CONSENT_TO_JSON[data.get("sms_opt_in") or ""],
        }
        for name in ("days_since_last_order_min", "days_since_last_order_max", "order_count_min", "order_count_max"):
            filters[name] = data.get(name)
        for name in ("lifetime_spend_min", "lifetime_spend_max"):
            filters[name] = str(data[name].quantize(Decimal("0.01"))) if data.get(name) is not None else None
        for name in ("joined_from", "joined_to"):
            filters[name] = data[name].isoformat() if data.get(name) else None
        return {name: filters[name] for name in FILTER_FIELDS if filters[name] not in (None, [], "")}


def initial_from_filters(filters: dict) -> dict:
    """A stored filters dict as the form's initial values."""
    filters = filters or {}
    initial = {}
    for name in FILTER_FIELDS:
        if name not in filters or filters[name] in (None, "", []):
            continue
        value = filters[name]
        if name in ("email_opt_in", "sms_opt_in"):
            value = JSON_TO_CONSENT.get(value, "")
        elif name == "tiers":
            value = list(Tier.objects.filter(code__in=value))
        elif name == "tags":
            value = list(Tag.objects.filter(pk__in=value))
        elif name in ("lifetime_spend_min", "lifetime_spend_max"):
            value = Decimal(str(value))
        elif name in ("joined_from", "joined_to"):
            value = date.fromisoformat(value)
        initial[name] = value
    return initial


class SegmentAdminForm(SegmentFiltersForm, forms.ModelForm):
    """The admin's segment page: name and description, and the filters as fields (not raw JSON)."""

    class Meta:
        model = Segment
        fields = ("name", "description")

    def __init__(self, *args, instance=None, initial=None, **kwargs):
        if instance is not None and instance.pk:
            initial = {**initial_from_filters(instance.filters), **(initial or {})}
        super().__init__(*args, instance=instance, initial=initial, **kwargs)

    def save(self, commit=True):
        self.instance.filters = self.to_filters()
        return super().save(commit=commit)
