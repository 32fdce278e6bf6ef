"""Shared set-up for the RFM and segment tests: a frozen clock, and buyers with given purchase aggregates."""
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import count

import pytest

from members.models import Member
from tests.clock import frozen_clock

NOW = datetime(2026, 3, 1, 19, 0, tzinfo=UTC)  # 2026-03-02 03:00 in Shanghai: the nightly refresh's hour

_numbers = count(1)


@pytest.fixture
def clock():
    with frozen_clock(NOW) as fake:
        yield fake


@pytest.fixture
def buyer(db):
    """A member with the purchase aggregates order_record (or an import's backfill) would have left: `days` since
    the last order (None: never ordered), `orders`, `spend`. The RFM refresh reads only these columns, so the tests
    set them directly instead of recording hundreds of orders."""

    def make(days=None, orders=None, spend="0", **fields):
        n = next(_numbers)
        last = NOW - timedelta(days=days) if days is not None else None
        if orders is None:
            orders = 0 if last is None else 1
        return Member.objects.create(
            external_id=fields.pop("external_id", f"rfm-{n:05d}"),
            referral_code=f"RFM{n:05d}",
            last_order_at=last,
            first_order_at=last,
            order_count=orders,
            lifetime_spend=Decimal(spend),
            **fields,
        )

    return make


def scores(member) -> tuple:
    member.refresh_from_db()
    return member.rfm_recency, member.rfm_frequency, member.rfm_monetary
