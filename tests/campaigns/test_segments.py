"""Segment filters (campaigns.selectors.segment_members / segment_count) and their form (campaigns.forms): each filter
alone, filters combined, the form's validation and its JSON round trip."""
from datetime import date, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from campaigns.forms import SegmentFiltersForm, initial_from_filters
from campaigns.selectors import segment_count, segment_members
from members.models import ActivityStatus, Member, RfmSegment, Tag
from members.rfm import rfm_refresh
from tiers.models import Tier

from .conftest import NOW

pytestmark = pytest.mark.django_db


def ids(filters) -> set[str]:
    return set(segment_members(filters).values_list("external_id", flat=True))


@pytest.fixture
def people(clock, buyer):
    """Six members with distinct profiles, scored by the RFM refresh."""
    silver = Tier.objects.get(code="silver")
    gold = Tier.objects.get(code="gold")
    vip, wholesale = Tag.objects.create(name="VIP"), Tag.objects.create(name="wholesale")
    rows = {
        "ana": buyer(days=2, orders=12, spend="5200.00", region="Shanghai", birthday=date(1990, 3, 14), tier=gold,
                     email_opt_in=True, sms_opt_in=True, joined_at=NOW - timedelta(days=700)),
        "bo": buyer(days=45, orders=3, spend="800.00", region="Beijing", birthday=date(1985, 3, 2), tier=silver,
                    email_opt_in=True, joined_at=NOW - timedelta(days=400)),
        "cy": buyer(days=200, orders=1, spend="60.00", region="Shanghai", birthday=date(2000, 11, 30),
                    sms_opt_in=True, joined_at=NOW - timedelta(days=300)),
        "di": buyer(days=10, orders=2, spend="300.00", region="Guangdong", tier=silver,
                    joined_at=NOW - timedelta(days=20)),
        "ed": buyer(days=None, region="Beijing", birthday=date(1999, 7, 7), email_opt_in=True,
                    joined_at=NOW - timedelta(days=5)),
        "fu": buyer(days=95, orders=6, spend="2500.00", region="", tier=gold, joined_at=NOW - timedelta(days=900)),
    }
    for key, member in rows.items():
        Member.objects.filter(pk=member.pk).update(external_id=key)
    rows["ana"].tags.add(vip)
    rows["bo"].tags.add(vip, wholesale)
    rows["fu"].tags.add(wholesale)
    rfm_refresh()
    return {"vip": vip, "wholesale": wholesale}


def test_no_filters_select_everyone(people):
    assert ids({}) == {"ana", "bo", "cy", "di", "ed", "fu"}
    assert segment_count({}) == 6


def test_by_tier_code(people):
    assert ids({"tiers": ["gold"]}) == {"ana", "fu"}
    assert ids({"tiers": ["silver", "gold"]}) == {"ana", "bo", "di", "fu"}


def test_by_rfm_segment(people):
    segments = dict(Member.objects.values_list("external_id", "rfm_segment"))
    champions = {key for key, segment in segments.items() if segment == RfmSegment.CHAMPIONS}

    assert champions and ids({"rfm_segments": [RfmSegment.CHAMPIONS]}) == champions
    assert ids({"rfm_segments": [RfmSegment.CHAMPIONS, RfmSegment.LOST]}) == {
        key for key, segment in segments.items() if segment in (RfmSegment.CHAMPIONS, RfmSegment.LOST)
    }


def test_by_activity_status(people):
    assert ids({"activity_statuses": [ActivityStatus.ACTIVE]}) == {"ana", "di"}
    assert ids({"activity_statuses": [ActivityStatus.NO_PURCHASE]}) == {"ed"}
    assert ids({"activity_statuses": [ActivityStatus.DORMANT, ActivityStatus.CHURN_RISK]}) == {"bo", "cy", "fu"}


def test_by_days_since_last_order(people):
    assert ids({"days_since_last_order_min": 30}) == {"bo", "cy", "fu"}
    assert ids({"days_since_last_order_max": 10}) == {"ana", "di"}  # 10 days ago counts as 10
    assert ids({"days_since_last_order_min": 40, "days_since_last_order_max": 100}) == {"bo", "fu"}
    assert ids({"days_since_last_order_max": 9}) == {"ana"}


def test_by_order_count(people):
    assert ids({"order_count_min": 3}) == {"ana", "bo", "fu"}
    assert ids({"order_count_max": 2}) == {"cy", "di", "ed"}
    assert ids({"order_count_min": 2, "order_count_max": 6}) == {"bo", "di", "fu"}


def test_by_lifetime_spend(people):
    assert ids({"lifetime_spend_min": "2500.00"}) == {"ana", "fu"}
    assert ids({"lifetime_spend_max": "300"}) == {"cy", "di", "ed"}
    assert ids({"lifetime_spend_min": "100", "lifetime_spend_max": "999.99"}) == {"bo", "di"}


def test_by_region(people):
    assert ids({"regions": ["Shanghai"]}) == {"ana", "cy"}
    assert ids({"regions": ["Beijing", "Guangdong"]}) == {"bo", "di", "ed"}


def test_by_tags_any_of(people):
    assert ids({"tags": [people["vip"].pk]}) == {"ana", "bo"}
    assert ids({"tags": [people["vip"].pk, people["wholesale"].pk]}) == {"ana", "bo", "fu"}
    assert segment_count({"tags": [people["vip"].pk, people["wholesale"].pk]}) == 3  # bo once, not twice


def test_by_birthday_month(people):
    assert ids({"birthday_months": [3]}) == {"ana", "bo"}
    assert ids({"birthday_months": [7, 11]}) == {"cy", "ed"}


def test_by_join_date_in_the_site_time_zone(people):
    # NOW is 2 March 03:00 in Shanghai: "di" joined 20 days before, on 10 February local time.
    assert ids({"joined_from": "2026-02-10"}) == {"di", "ed"}
    assert ids({"joined_from": "2026-02-11"}) == {"ed"}
    assert ids({"joined_to": "2026-02-10"}) == {"ana", "bo", "cy", "di", "fu"}
    assert ids({"joined_to": "2026-02-09"}) == {"ana", "bo", "cy", "fu"}


def test_by_consent_per_channel(people):
    assert ids({"email_opt_in": True}) == {"ana", "bo", "ed"}
    assert ids({"email_opt_in": False}) == {"cy", "di", "fu"}
    assert ids({"sms_opt_in": True}) == {"ana", "cy"}
    assert ids({"email_opt_in": True, "sms_opt_in": False}) == {"bo", "ed"}
    assert ids({"email_opt_in": None}) == ids({})


def test_filters_combine_with_and(people):
    filters = {
        "tiers": ["gold", "silver"],
        "regions": ["Shanghai", "Beijing"],
        "tags": [people["vip"].pk],
        "birthday_months": [3],
        "email_opt_in": True,
        "order_count_min": 3,
    }
    assert ids(filters) == {"ana", "bo"}
    assert ids({**filters, "days_since_last_order_min": 30}) == {"bo"}
    assert ids({**filters, "activity_statuses": [ActivityStatus.ACTIVE]}) == {"ana"}
    assert segment_count({**filters, "lifetime_spend_max": "100"}) == 0


def test_a_count_is_one_query(people):
    filters = {"tiers": ["gold"], "tags": [people["vip"].pk], "birthday_months": [3], "regions": ["Shanghai"]}

    with CaptureQueriesContext(connection) as queries:
        assert segment_count(filters) == 1

    assert len(queries) == 1
    assert "DISTINCT" not in queries[0]["sql"].upper()


# --- The form ---------------------------------------------------------------------------------------------------------


def test_the_form_turns_its_fields_into_the_stored_json(people):
    form = SegmentFiltersForm(
        data={
            "tiers": ["gold", "silver"],
            "rfm_segments": ["champions", "loyal"],
            "activity_statuses": ["dormant"],
            "days_since_last_order_min": "30",
            "order_count_max": "5",
            "lifetime_spend_min": "99.5",
            "regions": ["Shanghai"],
            "tags": [str(people["vip"].pk)],
            "birthday_months": ["11", "3"],
            "joined_from": "2025-01-01",
            "joined_to": "2025-12-31",
            "email_opt_in": "yes",
            "sms_opt_in": "",
        }
    )

    assert form.is_valid(), form.errors
    assert form.to_filters() == {
        "tiers": ["silver", "gold"],
        "rfm_segments": ["champions", "loyal"],
        "activity_statuses": ["dormant"],
        "days_since_last_order_min": 30,
        "order_count_max": 5,
        "lifetime_spend_min": "99.50",
        "regions": ["Shanghai"],
        "tags": [people["vip"].pk],
        "birthday_months": [3, 11],
        "joined_from": "2025-01-01",
        "joined_to": "2025-12-31",
        "email_opt_in": True,
    }


def test_stored_json_comes_back_as_the_same_form(people):
    filters = {
        "tiers": ["gold"], "tags": [people["wholesale"].pk], "lifetime_spend_max": "1000.00", "sms_opt_in": False,
        "joined_from": "2025-06-01", "birthday_months": [12], "regions": ["Atlantis"],
    }
    initial = initial_from_filters(filters)
    data = {
        "tiers": [t.code for t in initial["tiers"]], "tags": [t.pk for t in initial["tags"]],
        "lifetime_spend_max": str(initial["lifetime_spend_max"]), "sms_opt_in": initial["sms_opt_in"],
        "joined_from": initial["joined_from"].isoformat(), "birthday_months": initial["birthday_months"],
        "regions": initial["regions"],
    }

    form = SegmentFiltersForm(data=data, initial=initial)

    assert form.is_valid(), form.errors
    assert form.to_filters() == filters  # a region no member has any more is kept, not refused


def test_the_form_refuses_a_range_whose_bounds_are_reversed(db):
    form = SegmentFiltersForm(
        data={
            "order_count_min": "5", "order_count_max": "2",
            "days_since_last_order_min": "60", "days_since_last_order_max": "30",
            "lifetime_spend_min": "10", "lifetime_spend_max": "9.99",
            "joined_from": "2026-02-01", "joined_to": "2026-01-31",
        }
    )

    assert not form.is_valid()
    assert set(form.errors) == {"order_count_max", "days_since_last_order_max", "lifetime_spend_max", "joined_to"}


def test_the_form_refuses_unknown_choices_and_negative_numbers(db):
    form = SegmentFiltersForm(
        data={
            "rfm_segments": ["whales"], "tiers": ["platinum-plus"], "order_count_min": "-1", "birthday_months": ["13"],
        }
    )

    assert not form.is_valid()
    assert set(form.errors) == {"rfm_segments", "tiers", "order_count_min", "birthday_months"}


def test_an_empty_form_is_everyone(db):
    form = SegmentFiltersForm(data={})

    assert form.is_valid()
    assert form.to_filters() == {}
