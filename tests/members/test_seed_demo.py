"""`manage.py seed_demo`: demo data recorded through the real services, deterministic, loaded once."""
import re
from contextlib import contextmanager
from datetime import timedelta
from io import StringIO
from types import SimpleNamespace

import pytest
from django.core.management import CommandError, call_command
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from members.management.commands import seed_demo
from members.models import Member, Order
from points.models import PointsTransaction
from tiers.models import GrowthEvent, TierChange
from tiers.selectors import tier_policy
from tiers.services import tiers_recalculate
from tiers.windows import window_q

pytestmark = pytest.mark.django_db

SMALL = {"members": 30, "orders": 200}
HAN = re.compile(r"[\u4e00-\u9fff]")
LATIN_NAME = re.compile(r"^[A-Za-z]+ [A-Za-z]+$")


def seed(**options) -> str:
    out = StringIO()
    call_command("seed_demo", stdout=out, **{**SMALL, **options})
    return out.getvalue()


def demo_members():
    return Member.objects.filter(external_id__startswith="demo-")


def demo_orders():
    return Order.objects.filter(order_id__startswith="demo-o-")


def total_points() -> int:
    return PointsTransaction.objects.aggregate(total=Sum("amount"))["total"] or 0


@contextmanager
def seeded_once(django_db_blocker, **options):
    """seed_demo run once for the tests of a class that check what it made: each test runs in a savepoint inside this
    transaction (what a test writes is gone for the next), rolled back after the class. Gives the command's output."""
    with django_db_blocker.unblock(), transaction.atomic():
        yield seed(**options)
        transaction.set_rollback(True)


@pytest.fixture(scope="class")
def seeded(django_db_setup, django_db_blocker):
    with seeded_once(django_db_blocker) as output:
        yield output


@pytest.fixture(scope="class")
def seeded_with_400_orders(django_db_setup, django_db_blocker):
    with seeded_once(django_db_blocker, orders=400) as output:
        yield output


class TestTheSmallDemo:
    def test_seed_demo_creates_the_members_and_orders_asked_for(self, seeded):
        output = seeded

        assert demo_members().count() == 30
        assert demo_orders().count() == 200
        assert "Members per tier" in output
        assert "Elapsed" in output

    def test_seed_demo_points_balance_is_the_sum_of_the_members_ledger(self, seeded):
        ledger = dict(
            PointsTransaction.objects.values("member__external_id")
            .annotate(total=Sum("amount"))
            .values_list("member__external_id", "total")
        )
        members = list(demo_members())
        assert any(member.points_balance > 0 for member in members)
        for member in members:
            assert member.points_balance == ledger.get(member.external_id, 0), member.external_id

    def test_seed_demo_growth_value_is_the_sum_of_the_members_growth_events_in_the_window(self, seeded):
        as_of = timezone.now()
        tiers_recalculate(as_of=as_of)

        growth = dict(
            GrowthEvent.objects.filter(window_q(as_of, tier_policy()))
            .values("member__external_id")
            .annotate(total=Sum("amount"))
            .values_list("member__external_id", "total")
        )
        members = list(demo_members())
        assert any(member.growth_value > 0 for member in members)
        for member in members:
            assert member.growth_value == max(0, growth.get(member.external_id, 0)), member.external_id

    def test_seed_demo_mixes_chinese_and_english_names(self, seeded):
        names = list(demo_members().values_list("name", flat=True))
        assert any(HAN.search(name) for name in names)
        assert any(LATIN_NAME.match(name) for name in names)

    def test_seed_demo_orders_are_in_the_past_and_after_the_member_joined(self, seeded):
        now = timezone.now()

        for order in demo_orders().select_related("member"):
            assert order.member.joined_at < order.placed_at < now
            assert order.placed_at > now - timedelta(days=731)
            assert order.currency == "CNY"
        assert demo_members().filter(order_count=0).exists()  # dormant members

    def test_seed_demo_gives_every_member_a_unique_chinese_mobile_number(self, seeded):
        phones = list(demo_members().values_list("phone", flat=True))
        assert len(set(phones)) == len(phones)
        assert all(re.fullmatch(r"\+861[3-9]\d{9}", phone) for phone in phones)

    def test_seed_demo_registers_some_members_as_referred_by_an_earlier_member(self, seeded):
        referred = demo_members().filter(referred_by__isnull=False).select_related("referred_by")
        assert referred.exists()
        for member in referred:
            assert member.referred_by.joined_at < member.joined_at

    def test_seed_demo_run_twice_creates_nothing_new(self, seeded):
        before = (demo_members().count(), demo_orders().count(), total_points(), GrowthEvent.objects.count())

        output = seed()

        assert "Demo data already present" in output
        assert (demo_members().count(), demo_orders().count(), total_points(), GrowthEvent.objects.count()) == before

    def test_seed_demo_refuses_to_mix_with_demo_data_from_other_options(self, seeded):
        with pytest.raises(CommandError, match="fresh database"):
            seed(seed=7, members=40)


class TestTheSmallDemoWith400Orders:
    def test_seed_demo_puts_members_on_more_than_one_tier(self, seeded_with_400_orders):
        tiers = set(demo_members().values_list("tier__code", flat=True))
        assert "member" in tiers
        assert len(tiers) > 1

    def test_seed_demo_upgrades_each_member_in_the_order_of_their_purchases(self, seeded_with_400_orders):
        upgrades = TierChange.objects.filter(reason=TierChange.Reason.UPGRADE).order_by("member_id", "id")
        placed_at = dict(demo_orders().values_list("order_id", "placed_at"))
        by_member = {}
        for change in upgrades:
            by_member.setdefault(change.member_id, []).append(placed_at[change.reference])
        assert by_member
        for times in by_member.values():
            assert times == sorted(times)


class PowerCut(Exception):
    pass


def test_seed_demo_completes_an_interrupted_run_with_the_planned_data(monkeypatch):
    plans = []
    real_build_plan, real_order_record = seed_demo.build_plan, seed_demo.order_record
    monkeypatch.setattr(seed_demo, "build_plan", lambda **kw: plans.append(real_build_plan(**kw)) or plans[-1])
    monkeypatch.setattr(seed_demo, "BATCH_SIZE", 50)
    calls = []

    def crash_on_the_120th_order(**kwargs):
        calls.append(kwargs["order_id"])
        if len(calls) == 120:
            raise PowerCut
        return real_order_record(**kwargs)

    monkeypatch.setattr(seed_demo, "order_record", crash_on_the_120th_order)
    with pytest.raises(PowerCut):
        seed()
    assert demo_orders().count() == 100  # two batches committed, the third rolled back

    # The re-run happens three days later: the data must still be the first run's, not re-dated from the new "now".
    later = timezone.now() + timedelta(days=3)
    monkeypatch.setattr(seed_demo, "timezone", SimpleNamespace(now=lambda: later))
    monkeypatch.setattr(seed_demo, "order_record", real_order_record)
    seed()

    assert demo_orders().count() == 200
    first_plan = plans[0]
    recorded = {
        o.order_id: (o.member.external_id, o.placed_at, o.amount) for o in demo_orders().select_related("member")
    }
    planned = {
        o.order_id: (first_plan.members[o.member_index].external_id, o.placed_at, o.amount) for o in first_plan.orders
    }
    assert recorded == planned


def test_build_plan_is_deterministic_for_a_seed():
    anchor = timezone.now().replace(microsecond=0)

    first = seed_demo.build_plan(seed=3, members=50, orders=300, anchor=anchor)
    again = seed_demo.build_plan(seed=3, members=50, orders=300, anchor=anchor)
    other = seed_demo.build_plan(seed=4, members=50, orders=300, anchor=anchor)

    assert first == again
    assert first != other
    assert len(first.members) == 50 and len(first.orders) == 300
