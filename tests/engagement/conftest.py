import itertools
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from campaigns.engagement.models import Badge
from members.services import order_record

_order_ids = itertools.count()


@pytest.fixture(autouse=True)
def _uncached_leaderboard(settings):
    """The leaderboard is cached for a minute in production; tests read it fresh."""
    settings.LOYALTY_LEADERBOARD_CACHE_SECONDS = 0


@pytest.fixture
def place_order(db):
    """Record an order through the real pipeline (order_record and every handler). Returns the OrderResult."""

    def place(member, amount="100.00", *, coupon_code="", order_id=None, placed_at=None):
        return order_record(
            order_id=order_id or f"E-{next(_order_ids)}",
            customer_id=member.external_id,
            placed_at=placed_at or timezone.now() - timedelta(minutes=1),
            amount=Decimal(amount),
            currency="CNY",
            coupon_code=coupon_code,
        )

    return place


@pytest.fixture
def no_default_badges(db):
    """The data migration's starter badges retired, so a test sees only the badges it creates."""
    Badge.objects.update(active=False)
