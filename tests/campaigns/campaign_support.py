"""Shared set-up of the campaign tests (test_campaigns_*.py): fixtures are imported by the test modules, so this
folder's conftest stays the segments tests' own.

The clock is frozen at 10:30 on 2 March 2026 in Shanghai, outside the messages' quiet hours, so a queued message is
due at once."""
import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission, User
from django.utils import timezone

from campaigns.models import Campaign, CampaignVariant, Segment
from members.services import order_record
from points.models import PointsTransaction
from tests.clock import frozen_clock

NOW = datetime(2026, 3, 2, 2, 30, tzinfo=UTC)  # 10:30 in Shanghai
_order_ids = itertools.count(1)


@pytest.fixture
def clock():
    with frozen_clock(NOW) as fake:
        yield fake


@pytest.fixture
def campaign_factory(db):
    """A campaign, running since an hour ago by default (give status="draft" for one to launch)."""

    def make(kind=Campaign.Kind.BONUS_POINTS, **fields):
        defaults = {
            "name": f"{kind} campaign",
            "kind": kind,
            "status": Campaign.Status.RUNNING,
            "starts_at": timezone.now() - timedelta(hours=1),
        }
        return Campaign.objects.create(**{**defaults, **fields})

    return make


@pytest.fixture
def variant_factory(db):
    def make(campaign, name, weight=1, **fields):
        return CampaignVariant.objects.create(campaign=campaign, name=name, weight=weight, **fields)

    return make


@pytest.fixture
def segment_factory(db):
    def make(name="segment", **filters):
        return Segment.objects.create(name=name, filters=filters)

    return make


@pytest.fixture
def place_order(db):
    """Record an order through the real pipeline (every handler). Returns the OrderResult."""

    def place(member, amount="100.00", *, category="", channel="", placed_at=None, order_id=None):
        return order_record(
            order_id=order_id or f"C-{next(_order_ids)}",
            customer_id=member.external_id,
            placed_at=placed_at or timezone.now() - timedelta(minutes=1),
            amount=Decimal(amount),
            currency="CNY",
            category=category,
            channel=channel,
        )

    return place


@pytest.fixture
def reachable(member_factory):
    """A member who consents to email and SMS and has both addresses."""

    def make(**fields):
        return member_factory(**{"email_opt_in": True, "sms_opt_in": True, **fields})

    return make


@pytest.fixture
def launcher(db):
    """A staff user who may launch campaigns (and change them in the admin)."""
    user = User.objects.create_user("launcher", password="pw", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="campaigns",
            codename__in=["launch_campaign", "view_campaign", "change_campaign", "add_campaign"],
        )
    )
    return User.objects.get(pk=user.pk)  # permissions cache fresh


def campaign_credits(member, campaign):
    """The ledger credits a campaign gave a member."""
    return list(
        PointsTransaction.objects.filter(member=member, idempotency_key__startswith=f"campaign:{campaign.pk}:")
        .order_by("pk")
        .values_list("amount", flat=True)
    )
