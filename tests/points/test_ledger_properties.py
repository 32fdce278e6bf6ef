"""The ledger under random sequences of everything that moves points (Hypothesis stateful testing).

The machine drives two members through earning, orders (some paid partly with points), redemptions and their
cancellation, partial and full refunds under both returns policies, manual adjustments both ways, the expiry and
release jobs, and a fake clock that moves seconds to months ahead (or to the exact instant a lot expires or a pending
lot is due). Beside the database it keeps a small model of each member's lots written from the rules in the
docstrings of points.models and points.ledger (FIFO by expiry, available before pending, the order's own lot
first on a refund, debt paid off first, points given back latest-expiring first, lazily expired points never
spent), and after every step it checks:

- `ledger_mismatches() == {}` and no member has a negative balance, pending or debt;
- each member's balance, pending, debt and every lot's unspent remainder equal the model's;
- points are conserved, counted from what the services answered (not from the model): credited - spent - expired -
  clawed back == balance + pending - debt, and the points a member spent never exceed what was credited;
- an order's clawback never exceeds what it earned and its returned points never exceed what it used; once fully
  refunded, clawed back + forgiven == earned and returned == used;
- reward stock follows redemptions and cancellations.

Each example runs inside its own savepoint, rolled back in teardown, so it starts from a clean database.
"""
import os
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from unittest import mock

import pytest
from dateutil.relativedelta import relativedelta
from django.db import transaction
from django.db.models import Q
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from members.errors import InvalidOrder
from members.models import Member, Order
from members.services import member_register, order_record, order_refund
from points.errors import InsufficientPoints, RewardLimitReached, RewardOutOfStock
from points.models import LOT_KINDS, PointsPolicy, PointsTransaction, Reward
from points.selectors import ledger_mismatches
from points.services import (
    points_adjust,
    points_deduction_limit,
    points_deduction_value,
    points_earn,
    points_expire_due,
    points_expiry_for,
    points_release_due,
    redemption_cancel,
    reward_redeem,
)

Kind = PointsTransaction.Kind
CENT = Decimal("0.01")
START = datetime(2026, 1, 15, 2, 0, tzinfo=UTC)

# 20 sequences of up to 40 steps each: every rule runs many times per run in half the time of 40 sequences (the
# suite's time budget); LOYALTY_LEDGER_EXAMPLES=200 runs a deeper search.
LEDGER_SETTINGS = settings(
    max_examples=int(os.environ.get("LOYALTY_LEDGER_EXAMPLES", "20")),
    stateful_step_count=40,
    deadline=None,
    database=None,  # no .hypothesis/ directory in the project; a failure prints its steps
    suppress_health_check=[HealthCheck.too_slow],
)

EXPIRY_RULES = [
    (PointsPolicy.Expiry.MONTHS_AFTER, 1),
    (PointsPolicy.Expiry.MONTHS_AFTER, 3),
    (PointsPolicy.Expiry.END_OF_MONTH, 0),
    (PointsPolicy.Expiry.END_OF_MONTH, 1),
    (PointsPolicy.Expiry.END_OF_YEAR, 0),
    (PointsPolicy.Expiry.NEVER, 0),
]
WHO = st.sampled_from([0, 0, 0, 1])  # mostly the first member: longer histories per member in a short run
CLOCK_STEPS = st.one_of(
    st.integers(1, 3600).map(lambda s: relativedelta(seconds=s)),
    st.integers(1, 72).map(lambda h: relativedelta(hours=h)),
    st.integers(1, 45).map(lambda d: relativedelta(days=d)),
    st.integers(1, 3).map(lambda m: relativedelta(months=m)),
)


# --- the model ------------------------------------------------------------------------------------------------------


@dataclass
class LotModel:
    pk: int
    amount: int
    remaining: int
    expires_at: datetime | None
    pending_until: datetime | None

    def expired(self, now):
        return self.expires_at is not None and self.expires_at <= now


@dataclass
class DebitModel:
    drawn: dict  # lot pk -> points taken
    given_back: dict = field(default_factory=dict)


@dataclass
class MemberModel:
    pk: int
    external_id: str
    lots: dict = field(default_factory=dict)  # pk -> LotModel, in creation order
    debt: int = 0
    expired: int = 0
    # Counted from what the services answered, not from the lots:
    credited: int = 0
    spent: int = 0
    clawed: int = 0

    @property
    def balance(self):
        return sum(lot.remaining for lot in self.lots.values() if lot.pending_until is None)

    @property
    def pending(self):
        return sum(lot.remaining for lot in self.lots.values() if lot.pending_until is not None)

    def available_after_settle(self, now):
        """What a spend at `now` may use: lots not expired, released or due for release."""
        return sum(
            lot.remaining
            for lot in self.lots.values()
            if not lot.expired(now) and (lot.pending_until is None or lot.pending_until <= now)
        )

    def release(self, now):
        for lot in self.lots.values():
            if lot.pending_until is not None and lot.pending_until <= now:
                lot.pending_until = None

    def expire(self, now):
        for lot in self.lots.values():
            if lot.remaining and lot.expired(now):
                self.expired += lot.remaining
                lot.remaining = 0

    def settle(self, now):
        self.release(now)
        self.expire(now)

    def open_lot(self, pk, amount, expires_at, pending_until=None):
        paid = min(amount, self.debt)
        self.debt -= paid
        self.lots[pk] = LotModel(pk, amount, amount - paid, expires_at, pending_until)

    def draw(self, points, now, *, include_pending=False, first=None):
        candidates = [
            lot
            for lot in self.lots.values()
            if lot.remaining > 0 and not lot.expired(now) and (include_pending or lot.pending_until is None)
        ]
        candidates.sort(
            key=lambda lot: (
                lot.pk != first,
                lot.pending_until is not None,
                lot.expires_at is None,
                lot.expires_at.timestamp() if lot.expires_at else 0,
                lot.pk,
            )
        )
        draws, left = {}, points
        for lot in candidates:
            if left <= 0:
                break
            take = min(left, lot.remaining)
            draws[lot.pk] = take
            left -= take
        for pk, take in draws.items():
            self.lots[pk].remaining -= take
        return DebitModel(drawn=draws)

    def give_back(self, debit, points, now):
        debt_paid = min(points, self.debt)
        self.debt -= debt_paid
        left = points - debt_paid
        # never-expiring first, then latest-expiring first, newest first on a tie
        lots = sorted(
            (self.lots[pk] for pk in debit.drawn),
            key=lambda lot: (
                lot.expires_at is not None,
                -(lot.expires_at.timestamp() if lot.expires_at else 0),
                -lot.pk,
            ),
        )
        restored = []
        for lot in lots:
            give = min(left, debit.drawn[lot.pk] - debit.given_back.get(lot.pk, 0))
            if give > 0:
                lot.remaining += give
                debit.given_back[lot.pk] = debit.given_back.get(lot.pk, 0) + give
                restored.append(lot)
                left -= give
        assert left == 0, "the model gave back more than the debit drew"
        if any(lot.expired(now) for lot in restored):
            self.settle(now)


@dataclass
class OrderModel:
    order_id: str
    member: MemberModel
    amount: Decimal
    points_used: int
    points_earned: int
    lot_pk: int | None
    deduct: DebitModel | None
    refunded: Decimal = Decimal("0")
    returned: int = 0
    clawed: int = 0
    forgiven: int = 0

    def share_of(self, total, before, after):
        """The cumulative share rule of members.services.OrderRefunded.share_of."""
        if self.amount <= 0 or total <= 0:
            return 0
        return int(total * after / self.amount) - int(total * before / self.amount)


@dataclass
class RedemptionModel:
    pk: int
    member: MemberModel
    reward_code: str
    quantity: int
    points: int
    debit: DebitModel
    cancelled: bool = False


# --- the machine ----------------------------------------------------------------------------------------------------


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.now = START
        self._clock = mock.patch("django.utils.timezone.now", lambda: self.now)
        self._clock.start()
        self._example = transaction.atomic()
        self._example.__enter__()
        self.tag = uuid.uuid4().hex[:8]
        self.members: list[MemberModel] = []
        self.orders: list[OrderModel] = []
        self.redemptions: list[RedemptionModel] = []
        self.rewards: dict[str, dict] = {}
        self.counter = 0

    def teardown(self):
        try:
            transaction.set_rollback(True)
            self._example.__exit__(None, None, None)
        finally:
            self._clock.stop()

    def key(self, what):
        self.counter += 1
        return f"{self.tag}-{what}-{self.counter}"

    def member(self, who) -> tuple[MemberModel, Member]:
        model = self.members[who]
        return model, Member.objects.get(pk=model.pk)

    @property
    def policy(self):
        return PointsPolicy.objects.get(pk=1)

    # -- setup --

    @initialize(
        expiry=st.sampled_from(EXPIRY_RULES),
        pending_days=st.sampled_from([0, 3, 14]),
        returns=st.sampled_from(PointsPolicy.Returns.values),
    )
    def setup(self, expiry, pending_days, returns):
        mode, period = expiry
        PointsPolicy.objects.update_or_create(
            pk=1,
            defaults={
                "expiry_mode": mode,
                "expiry_period": period,
                "pending_days": pending_days,
                "returns_policy": returns,
                "deduction_points_per_unit": 100,
                "deduction_max_percent": 50,
                "deduction_min_points": 20,
            },
        )
        for i in range(2):
            member, created = member_register(external_id=f"prop-{self.tag}-{i}")
            assert created
            self.members.append(MemberModel(pk=member.pk, external_id=member.external_id))
        # Small stock and a per-member limit, so both refusals happen.
        for code, cost, stock, limit in [("cheap", 30, 2, None), ("limited", 20, None, 1)]:
            reward = Reward.objects.create(
                code=f"{code}-{self.tag}", name=code, points_cost=cost, stock=stock, per_member_limit=limit
            )
            self.rewards[reward.code] = {"cost": cost, "stock": stock, "limit": limit}

    # -- earning --

    @rule(who=WHO, amount=st.integers(1, 300), hours=st.none() | st.integers(1, 400 * 24))
    def earn(self, who, amount, hours):
        model, member = self.member(who)
        expires_at = self.now + timedelta(hours=hours) if hours else None
        lot, created = points_earn(
            member=member, amount=amount, idempotency_key=self.key("earn"), expires_at=expires_at
        )
        assert created
        assert lot.expires_at == (expires_at if expires_at else points_expiry_for(self.now))
        model.open_lot(lot.pk, amount, lot.expires_at)
        model.credited += amount

    @rule(who=WHO, amount=st.integers(-300, 300).filter(bool))
    def adjust(self, who, amount):
        model, member = self.member(who)
        adjust = {"member": member, "amount": amount, "reason": "property test", "created_by": None}
        adjust["idempotency_key"] = self.key("adjust")
        if amount < 0 and model.available_after_settle(self.now) < -amount:
            with pytest.raises(InsufficientPoints):
                points_adjust(**adjust)
            return
        transaction_ = points_adjust(**adjust)
        if amount > 0:
            assert transaction_.expires_at == points_expiry_for(self.now)
            model.open_lot(transaction_.pk, amount, transaction_.expires_at)
            model.credited += amount
        else:
            model.settle(self.now)
            model.draw(-amount, self.now)
            model.spent += -amount

    @rule(who=WHO)
    def staff_take_every_available_point(self, who):
        """Spending it all makes later refunds run into debt (or forgiveness)."""
        model, member = self.member(who)
        available = model.available_after_settle(self.now)
        if not available:
            return
        points_adjust(
            member=member, amount=-available, reason="property test", created_by=None, idempotency_key=self.key("all")
        )
        model.settle(self.now)
        model.draw(available, self.now)
        model.spent += available

    # -- orders and refunds --

    @rule(
        who=WHO,
        total=st.decimals(min_value=1, max_value=500, places=2),
        use_points=st.booleans(),
        share=st.integers(0, 100),
    )
    def order(self, who, total, use_points, share):
        model, _member = self.member(who)
        policy = self.policy
        points = 0
        if use_points:
            limit = points_deduction_limit(
                order_total=total, available=model.available_after_settle(self.now), policy=policy
            )
            if limit:
                points = policy.deduction_min_points + (limit - policy.deduction_min_points) * share // 100
        amount = total - points_deduction_value(points, policy)
        order_id = self.key("order")

        result = order_record(
            order_id=order_id,
            customer_id=model.external_id,
            placed_at=self.now,
            amount=amount,
            currency="CNY",
            points_to_use=points,
        )

        order = result.order
        assert result.created and order.points_used == points
        deduct = None
        if points:
            model.settle(self.now)
            deduct = model.draw(points, self.now)
            model.spent += points
        lot_pk = None
        if order.points_earned:
            lot = PointsTransaction.objects.get(idempotency_key=f"order:{order_id}:earn")
            pending_until = self.now + timedelta(days=policy.pending_days) if policy.pending_days else None
            assert (lot.amount, lot.pending_until) == (order.points_earned, pending_until)
            assert lot.expires_at == points_expiry_for(self.now, policy)
            model.open_lot(lot.pk, lot.amount, lot.expires_at, pending_until)
            model.credited += lot.amount
            lot_pk = lot.pk
        self.orders.append(OrderModel(order_id, model, amount, points, order.points_earned, lot_pk, deduct))

    @rule(who=WHO, minutes=st.integers(11, 60 * 24 * 60))
    def order_placed_in_the_future_is_refused(self, who, minutes):
        model, _member = self.member(who)
        with pytest.raises(InvalidOrder):
            order_record(
                order_id=self.key("future"),
                customer_id=model.external_id,
                placed_at=self.now + timedelta(minutes=minutes),
                amount=Decimal("10.00"),
                currency="CNY",
            )
        assert not Order.objects.filter(member_id=model.pk, placed_at__gt=self.now).exists()

    @precondition(lambda self: any(order.refunded < order.amount for order in self.orders))
    @rule(
        pick=st.integers(min_value=0),
        full=st.booleans(),
        percent=st.integers(1, 99),
        returns=st.sampled_from(PointsPolicy.Returns.values),
    )
    def refund(self, pick, full, percent, returns):
        open_orders = [order for order in self.orders if order.refunded < order.amount]
        order = open_orders[pick % len(open_orders)]
        model = order.member
        left = order.amount - order.refunded
        amount = left if full else min(left, max(CENT, (left * percent / 100).quantize(CENT, rounding=ROUND_DOWN)))
        PointsPolicy.objects.filter(pk=1).update(returns_policy=returns)

        refund = order_refund(order_id=order.order_id, refund_id=self.key("refund"), amount=amount).refund

        before, after = order.refunded, order.refunded + amount
        model.settle(self.now)
        to_return = order.share_of(order.points_used, before, after)
        if to_return:
            model.give_back(order.deduct, to_return, self.now)
        to_claw = order.share_of(order.points_earned, before, after)
        taken = 0
        if to_claw:
            taken = sum(model.draw(to_claw, self.now, include_pending=True, first=order.lot_pk).drawn.values())
        short = to_claw - taken
        if returns == PointsPolicy.Returns.DEBT:
            model.debt += short
            expected = {"returned": to_return, "clawed_back": to_claw, "debt": short, "forgiven": 0}
        else:
            expected = {"returned": to_return, "clawed_back": taken, "debt": 0, "forgiven": short}
        answered = {
            "returned": refund.points_returned,
            "clawed_back": refund.points_clawed_back,
            "debt": refund.points_debt,
            "forgiven": refund.points_forgiven,
        }
        assert answered == expected
        order.refunded = after
        order.returned += refund.points_returned
        order.clawed += refund.points_clawed_back
        order.forgiven += refund.points_forgiven
        model.spent -= refund.points_returned
        model.clawed += refund.points_clawed_back

    # -- rewards --

    @rule(who=WHO, cheap=st.booleans(), quantity=st.integers(1, 2))
    def redeem(self, who, cheap, quantity):
        model, member = self.member(who)
        code = next(code for code in self.rewards if code.startswith("cheap" if cheap else "limited"))
        reward = self.rewards[code]
        cost = reward["cost"] * quantity
        taken = sum(
            r.quantity for r in self.redemptions if r.member is model and r.reward_code == code and not r.cancelled
        )
        expected_error = None
        if reward["limit"] is not None and taken + quantity > reward["limit"]:
            expected_error = RewardLimitReached
        elif reward["stock"] is not None and reward["stock"] < quantity:
            expected_error = RewardOutOfStock
        elif model.available_after_settle(self.now) < cost:
            expected_error = InsufficientPoints
        key = self.key("redeem")
        if expected_error:
            with pytest.raises(expected_error):
                reward_redeem(member=member, reward_code=code, quantity=quantity, idempotency_key=key)
            return

        redemption, created = reward_redeem(member=member, reward_code=code, quantity=quantity, idempotency_key=key)

        assert created and redemption.points == cost
        model.settle(self.now)
        debit = model.draw(cost, self.now)
        model.spent += cost
        if reward["stock"] is not None:
            reward["stock"] -= quantity
        self.redemptions.append(RedemptionModel(redemption.pk, model, code, quantity, cost, debit))

    @precondition(lambda self: self.redemptions)
    @rule(pick=st.integers(min_value=0))
    def cancel_redemption(self, pick):
        redemption = self.redemptions[pick % len(self.redemptions)]

        redemption_cancel(redemption_id=redemption.pk, reason="property test")

        if redemption.cancelled:
            return  # a second cancel changes nothing
        model = redemption.member
        model.settle(self.now)
        model.give_back(redemption.debit, redemption.points, self.now)
        model.spent -= redemption.points
        redemption.cancelled = True
        if self.rewards[redemption.reward_code]["stock"] is not None:
            self.rewards[redemption.reward_code]["stock"] += redemption.quantity

    # -- jobs and time --

    @rule()
    def expire_job(self):
        points_expire_due()
        for model in self.members:
            model.expire(self.now)

    @rule()
    def release_job(self):
        points_release_due()
        for model in self.members:
            model.release(self.now)

    @rule(step=CLOCK_STEPS)
    def time_passes(self, step):
        self.now = self.now + step

    def _moments_ahead(self):
        moments = set()
        for model in self.members:
            for lot in model.lots.values():
                moments.update(t for t in (lot.expires_at, lot.pending_until) if t is not None and t > self.now)
        return sorted(moments)

    @precondition(lambda self: self._moments_ahead())
    @rule(pick=st.integers(min_value=0), just_before=st.booleans())
    def clock_to_an_expiry_or_release(self, pick, just_before):
        moments = self._moments_ahead()
        moment = moments[pick % len(moments)]
        self.now = moment - timedelta(microseconds=1) if just_before else moment

    # -- checks after every step --

    @invariant()
    def ledger_is_sound(self):
        assert ledger_mismatches() == {}
        negative = Q(points_balance__lt=0) | Q(points_pending__lt=0) | Q(points_debt__lt=0)
        assert not Member.objects.filter(negative).exists()

    @invariant()
    def database_agrees_with_the_model(self):
        ids = [model.pk for model in self.members]
        rows = {
            pk: (balance, pending, debt)
            for pk, balance, pending, debt in Member.objects.filter(pk__in=ids).values_list(
                "pk", "points_balance", "points_pending", "points_debt"
            )
        }
        lots, expired = {}, dict.fromkeys(ids, 0)
        for pk, member_id, kind, amount, remaining, pending_until in PointsTransaction.objects.filter(
            member_id__in=ids
        ).values_list("pk", "member_id", "kind", "amount", "remaining", "pending_until"):
            if kind in LOT_KINDS and amount > 0:
                lots[pk] = (remaining, pending_until is not None)
            elif kind == Kind.EXPIRE:
                expired[member_id] -= amount
        stock = dict(Reward.objects.filter(code__in=list(self.rewards)).values_list("code", "stock"))

        # Against the model of lots:
        for model in self.members:
            assert rows[model.pk] == (model.balance, model.pending, model.debt), model.external_id
            assert expired[model.pk] == model.expired, model.external_id
        assert lots == {
            lot.pk: (lot.remaining, lot.pending_until is not None)
            for model in self.members
            for lot in model.lots.values()
        }
        assert stock == {code: reward["stock"] for code, reward in self.rewards.items()}

        # Conservation, counted from what the services answered:
        for model in self.members:
            balance, pending, debt = rows[model.pk]
            assert 0 <= model.spent <= model.credited
            assert model.spent + expired[model.pk] + model.clawed - debt <= model.credited
            assert model.credited - model.spent - expired[model.pk] - model.clawed == balance + pending - debt

        # Refunds never take back more than the order earned, nor give back more than it used:
        for order in self.orders:
            assert 0 <= order.clawed <= order.points_earned
            assert 0 <= order.returned <= order.points_used
            if order.refunded == order.amount:
                assert order.clawed + order.forgiven == order.points_earned
                assert order.returned == order.points_used


def test_the_ledger_stays_sound_under_random_sequences_of_points_operations(db):
    run_state_machine_as_test(LedgerMachine, settings=LEDGER_SETTINGS)


# --- sequences the random search reaches rarely, replayed on every run ------------------------------------------------
# Each step runs through the machine, so the model and every invariant above are checked after it.

DEBT = PointsPolicy.Returns.DEBT


def replay(*steps):
    machine = LedgerMachine()
    try:
        for name, arguments in steps:
            getattr(machine, name)(**arguments)
            machine.ledger_is_sound()
            machine.database_agrees_with_the_model()
    finally:
        machine.teardown()
    return machine


def test_a_partial_return_of_points_used_on_an_order_goes_back_to_the_latest_expiring_lot_first(db):
    replay(
        ("setup", {"expiry": (PointsPolicy.Expiry.MONTHS_AFTER, 3), "pending_days": 0, "returns": DEBT}),
        ("earn", {"who": 0, "amount": 100, "hours": 10 * 24}),
        ("earn", {"who": 0, "amount": 100, "hours": 60 * 24}),
        # 200 points pay ¥2.00 of a ¥400.00 order, drawn from both lots
        ("order", {"who": 0, "total": Decimal("400.00"), "use_points": True, "share": 100}),
        # half the money back: 100 of the 200 points return, to the lot expiring in 60 days
        ("refund", {"pick": 0, "full": False, "percent": 50, "returns": DEBT}),
    )


def test_a_clawback_beyond_the_orders_own_lot_takes_available_points_before_pending_ones(db):
    replay(
        ("setup", {"expiry": (PointsPolicy.Expiry.MONTHS_AFTER, 3), "pending_days": 3, "returns": DEBT}),
        ("order", {"who": 0, "total": Decimal("100.00"), "use_points": False, "share": 0}),
        ("time_passes", {"step": relativedelta(days=3)}),  # the order's 100 points are released...
        ("adjust", {"who": 0, "amount": -60}),  # ...and 60 of them spent
        ("earn", {"who": 0, "amount": 50, "hours": 30 * 24}),
        ("order", {"who": 0, "total": Decimal("100.00"), "use_points": False, "share": 0}),  # 100 pending
        # the first order refunded: 40 from its own lot, 50 available, only then 10 pending
        ("refund", {"pick": 0, "full": True, "percent": 1, "returns": DEBT}),
    )


def test_points_given_back_while_in_debt_pay_the_debt_off_first(db):
    replay(
        ("setup", {"expiry": (PointsPolicy.Expiry.MONTHS_AFTER, 3), "pending_days": 0, "returns": DEBT}),
        ("order", {"who": 0, "total": Decimal("100.00"), "use_points": False, "share": 0}),
        ("redeem", {"who": 0, "cheap": True, "quantity": 1}),  # 30 spent
        ("staff_take_every_available_point", {"who": 0}),  # the other 70 too
        ("refund", {"pick": 0, "full": True, "percent": 1, "returns": DEBT}),  # 100 clawed back: 100 debt
        ("cancel_redemption", {"pick": 0}),  # 30 back: debt 70, no lot refilled
    )
