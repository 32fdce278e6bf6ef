"""Reads on the points ledger: the policy, expiring points, rewards for a member, the ledger check and the
liability report for finance. All set-based: no query runs once per member or per lot."""
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from dateutil.relativedelta import relativedelta
from django.db.models import (
    Count,
    DateTimeField,
    ExpressionWrapper,
    F,
    OuterRef,
    Q,
    Subquery,
    Sum,
    Value,
)
from django.db.models.functions import Coalesce, TruncDate, TruncMonth
from django.utils import timezone

from members.models import Member

from .models import LOT_KINDS, PointsAllocation, PointsPolicy, PointsTransaction, Redemption, Reward

Kind = PointsTransaction.Kind
CENT = Decimal("0.01")


def points_policy() -> PointsPolicy:
    """The programme's points policy (one row; created with defaults if a database lost it)."""
    policy = PointsPolicy.objects.filter(pk=1).first()
    return policy if policy is not None else PointsPolicy.objects.get_or_create(pk=1)[0]


def _last_valid_moment():
    """A lot expiring at local midnight of 1 April is spendable through 31 March: dates and months shown to people
    are those of the last moment the points can be used."""
    return ExpressionWrapper(F("expires_at") - timedelta(microseconds=1), output_field=DateTimeField())


def live_lots(now: datetime | None = None):
    now = now or timezone.now()
    return PointsTransaction.objects.filter(Q(expires_at__gt=now) | Q(expires_at__isnull=True), remaining__gt=0)


def points_expiring_soon(member: Member, *, days: int | None = None, now: datetime | None = None) -> list[dict]:
    """Unspent points that expire within `days` (default: the policy's window), summed per last day they can be
    used (in the site's time zone), soonest first."""
    now = now or timezone.now()
    if days is None:
        days = points_policy().expiring_soon_days
    rows = (
        PointsTransaction.objects.filter(
            member=member, remaining__gt=0, expires_at__gt=now, expires_at__lte=now + timedelta(days=days)
        )
        .annotate(last_day=TruncDate(_last_valid_moment(), tzinfo=timezone.get_default_timezone()))
        .values("last_day")
        .annotate(points=Sum("remaining"))
        .order_by("last_day")
    )
    return [{"date": row["last_day"], "points": row["points"]} for row in rows]


def member_detail_points_section(member: Member) -> dict:
    return {"points_expiring_soon": points_expiring_soon(member)}


def member_transactions(member: Member):
    """A member's ledger, newest first (the API pages it by id)."""
    return PointsTransaction.objects.filter(member=member).order_by("-id")


# --- Rewards ----------------------------------------------------------------------------------------------------------


@dataclass
class RewardOffer:
    reward: Reward
    eligible: bool
    reason: str  # "" when eligible, else the error code redeeming would answer
    redeemed: int = 0


def rewards_available(now: datetime | None = None):
    now = now or timezone.now()
    return (
        Reward.objects.filter(active=True)
        .filter(Q(available_from__isnull=True) | Q(available_from__lte=now))
        .filter(Q(available_until__isnull=True) | Q(available_until__gt=now))
        .select_related("min_tier")
        .order_by("points_cost", "code")
    )


def reward_refusal(*, member: Member, reward: Reward, redeemed: int, quantity: int = 1) -> str:
    """Why `member` cannot redeem `quantity` of `reward` (already redeemed: `redeemed`), as the error code redeeming
    answers; "" when only the balance and the reward's window are left to check. Shared by the rewards list and
    points.services.reward_redeem, so both give the same reasons."""
    if member.is_blocked:
        return "member_blocked"
    # The member's tier is read only for a reward that asks for one: a locked, reloaded member has no tier cached,
    # and loading it would cost every redemption a query.
    if reward.min_tier_id and (member.tier.rank if member.tier_id else -1) < reward.min_tier.rank:
        return "tier_too_low"
    if reward.per_member_limit is not None and redeemed + quantity > reward.per_member_limit:
        return "member_limit_reached"
    if reward.stock is not None and reward.stock < quantity:
        return "out_of_stock"
    return ""


def rewards_for_member(member: Member | None, *, now: datetime | None = None) -> list[RewardOffer]:
    """The catalogue open now, each with whether `member` can redeem one and, if not, why. Two queries whatever
    the catalogue's size: the rewards, and the member's redemptions counted per reward."""
    rewards = list(rewards_available(now))
    if member is None:
        return [RewardOffer(reward, reward.stock != 0, "" if reward.stock != 0 else "out_of_stock") for reward in rewards]
    redeemed = dict(
        Redemption.objects.filter(member=member, status=Redemption.Status.COMPLETED, reward__in=rewards)
        .values_list("reward_id")
        .annotate(total=Sum("quantity"))
    )
    offers = []
    for reward in rewards:
        taken = redeemed.get(reward.pk, 0)
        reason = reward_refusal(member=member, reward=reward, redeemed=taken) or (
            "insufficient_points" if member.points_balance < reward.points_cost else ""
        )
        offers.append(RewardOffer(reward, not reason, reason, taken))
    return offers


# --- Ledger check -------------------------------------------------------------------------------------------------


def ledger_mismatches(*, member_ids=None) -> dict[int, list[str]]:
    """Check the ledger's invariants (points.models) for every member, or those given. Returns {member id: problems};
    empty when the ledger is sound. Four set-based queries:

    1. per member: sum(amount) == balance + pending - debt; sum(debt_delta) == debt;
       sum(remaining of lots) == balance + pending; sum(remaining of pending lots) == pending;
    2. per lot: amount + debt_delta + sum(its allocations) == remaining;
    3. per other transaction: sum(its allocations) == amount + debt_delta;
    4. every allocation moves a lot of the same member.
    """
    problems: dict[int, list[str]] = {}
    members = Member.objects.all()
    transactions = PointsTransaction.objects.all()
    if member_ids is not None:
        members = members.filter(pk__in=member_ids)
        transactions = transactions.filter(member_id__in=member_ids)

    def per_member(**filters):
        return (
            PointsTransaction.objects.filter(member=OuterRef("pk"), **filters)
            .order_by()
            .values("member")
        )

    checked = members.annotate(
        tx_sum=Coalesce(Subquery(per_member().annotate(t=Sum("amount")).values("t")[:1]), Value(0)),
        debt_sum=Coalesce(Subquery(per_member().annotate(t=Sum("debt_delta")).values("t")[:1]), Value(0)),
        lot_sum=Coalesce(
            Subquery(per_member(remaining__gt=0).annotate(t=Sum("remaining")).values("t")[:1]), Value(0)
        ),
        pending_sum=Coalesce(
            Subquery(
                per_member(remaining__gt=0, pending_until__isnull=False).annotate(t=Sum("remaining")).values("t")[:1]
            ),
            Value(0),
        ),
    ).filter(
        ~Q(tx_sum=F("points_balance") + F("points_pending") - F("points_debt"))
        | ~Q(debt_sum=F("points_debt"))
        | ~Q(lot_sum=F("points_balance") + F("points_pending"))
        | ~Q(pending_sum=F("points_pending"))
    )
    for row in checked.values(
        "pk", "points_balance", "points_pending", "points_debt", "tx_sum", "debt_sum", "lot_sum", "pending_sum"
    ):
        found = problems.setdefault(row["pk"], [])
        if row["tx_sum"] != row["points_balance"] + row["points_pending"] - row["points_debt"]:
            found.append(
                f"transactions sum to {row['tx_sum']}, balances say {row['points_balance']} available "
                f"+ {row['points_pending']} pending - {row['points_debt']} debt"
            )
        if row["debt_sum"] != row["points_debt"]:
            found.append(f"debt changes sum to {row['debt_sum']}, points_debt is {row['points_debt']}")
        if row["lot_sum"] != row["points_balance"] + row["points_pending"]:
            found.append(
                f"lots hold {row['lot_sum']} unspent, balances say {row['points_balance'] + row['points_pending']}"
            )
        if row["pending_sum"] != row["points_pending"]:
            found.append(f"pending lots hold {row['pending_sum']}, points_pending is {row['points_pending']}")

    allocations_to = PointsAllocation.objects.filter(lot=OuterRef("pk")).order_by().values("lot")
    bad_lots = (
        transactions.filter(amount__gt=0, kind__in=LOT_KINDS)
        .annotate(moved=Coalesce(Subquery(allocations_to.annotate(t=Sum("points")).values("t")[:1]), Value(0)))
        .exclude(remaining=F("amount") + F("debt_delta") + F("moved"))
        .values_list("member_id", "pk", "remaining")
    )
    for member_id, pk, remaining in bad_lots:
        problems.setdefault(member_id, []).append(f"lot {pk}: remaining {remaining} does not match its allocations")

    allocations_of = PointsAllocation.objects.filter(transaction=OuterRef("pk")).order_by().values("transaction")
    bad_moves = (
        transactions.exclude(amount__gt=0, kind__in=LOT_KINDS)
        .annotate(moved=Coalesce(Subquery(allocations_of.annotate(t=Sum("points")).values("t")[:1]), Value(0)))
        .exclude(moved=F("amount") + F("debt_delta"))
        .values_list("member_id", "pk", "kind")
    )
    for member_id, pk, kind in bad_moves:
        problems.setdefault(member_id, []).append(f"{kind} {pk}: not traced to lots (allocations do not add up)")

    stray = PointsAllocation.objects.exclude(lot__member_id=F("transaction__member_id")) | PointsAllocation.objects.exclude(
        lot__kind__in=LOT_KINDS
    )
    if member_ids is not None:
        stray = stray.filter(transaction__member_id__in=member_ids)
    for member_id, pk in stray.values_list("transaction__member_id", "pk"):
        problems.setdefault(member_id, []).append(f"allocation {pk} moves a lot that is not this member's")
    return problems


# --- Liability ----------------------------------------------------------------------------------------------------


@dataclass
class Liability:
    as_of: datetime
    point_value: Decimal
    available: int
    pending: int
    members: int
    by_tier: list[dict] = field(default_factory=list)
    by_expiry_month: list[dict] = field(default_factory=list)
    by_month: list[dict] = field(default_factory=list)
    issued: int = 0
    redeemed: int = 0
    expired: int = 0
    clawed_back: int = 0
    adjusted_out: int = 0
    breakage_rate: Decimal | None = None

    @property
    def outstanding(self) -> int:
        return self.available + self.pending

    @property
    def value(self) -> Decimal:
        return money(self.outstanding, self.point_value)

    @property
    def breakage_percent(self) -> Decimal | None:
        return None if self.breakage_rate is None else (self.breakage_rate * 100).quantize(Decimal("0.1"))


def money(points: int, point_value: Decimal) -> Decimal:
    return (Decimal(points) * point_value).quantize(CENT)


def points_liability(*, months: int = 12, now: datetime | None = None) -> Liability:
    """What the programme owes in points and what happened to points month by month, for finance.

    - Outstanding: unspent points of live lots (available and pending apart) and their value at the policy's
      value per point; by tier (the member's current tier) and by the month the points stop being spendable.
    - Flows for the last `months` calendar months (site time zone): issued (credits that opened lots), redeemed
      (rewards and cash deduction, net of cancellations and returns), expired, clawed back on refunds, adjusted.
    - Breakage rate over that window: expired ÷ issued, the share of points that ran out instead of being spent.
    """
    now = now or timezone.now()
    tz = timezone.get_default_timezone()
    policy = points_policy()
    lots = live_lots(now)
    totals = lots.aggregate(
        available=Sum("remaining", filter=Q(pending_until__isnull=True)),
        pending=Sum("remaining", filter=Q(pending_until__isnull=False)),
        members=Count("member", distinct=True),
    )
    report = Liability(
        as_of=now,
        point_value=policy.point_value,
        available=totals["available"] or 0,
        pending=totals["pending"] or 0,
        members=totals["members"] or 0,
    )
    for row in (
        lots.values("member__tier__name", "member__tier__rank")
        .annotate(points=Sum("remaining"), members=Count("member", distinct=True))
        .order_by("member__tier__rank")
    ):
        report.by_tier.append(
            {
                "tier": row["member__tier__name"] or "—",
                "members": row["members"],
                "points": row["points"],
                "value": money(row["points"], policy.point_value),
            }
        )
    for row in (
        lots.annotate(month=TruncMonth(_last_valid_moment(), tzinfo=tz))
        .values("month")
        .annotate(points=Sum("remaining"))
        .order_by(F("month").asc(nulls_last=True))
    ):
        report.by_expiry_month.append(
            {
                "month": row["month"].date() if row["month"] else None,
                "points": row["points"],
                "value": money(row["points"], policy.point_value),
            }
        )

    local_now = timezone.localtime(now, tz)
    since = timezone.make_aware(
        local_now.replace(tzinfo=None, day=1, hour=0, minute=0, second=0, microsecond=0)
        - relativedelta(months=months - 1),
        tz,
    )
    flows: dict = {}
    for row in (
        PointsTransaction.objects.filter(created_at__gte=since)
        .annotate(month=TruncMonth("created_at", tzinfo=tz))
        .values("month", "kind")
        .annotate(points=Sum("amount"), credits=Sum("amount", filter=Q(amount__gt=0)), debits=Sum("amount", filter=Q(amount__lt=0)))
        .order_by("month")
    ):
        month = flows.setdefault(
            row["month"].date(),
            {"issued": 0, "redeemed": 0, "expired": 0, "clawed_back": 0, "adjusted_out": 0},
        )
        kind = row["kind"]
        if kind in LOT_KINDS:
            month["issued"] += row["credits"] or 0
        if kind == Kind.ADJUST:
            month["adjusted_out"] -= row["debits"] or 0
        elif kind in (Kind.REDEEM, Kind.DEDUCT, Kind.REDEEM_CANCEL, Kind.DEDUCT_RETURN):
            month["redeemed"] -= row["points"]
        elif kind == Kind.EXPIRE:
            month["expired"] -= row["points"]
        elif kind == Kind.CLAWBACK:
            month["clawed_back"] -= row["points"]
    report.by_month = [{"month": month, **figures} for month, figures in sorted(flows.items())]
    report.issued = sum(m["issued"] for m in report.by_month)
    report.redeemed = sum(m["redeemed"] for m in report.by_month)
    report.expired = sum(m["expired"] for m in report.by_month)
    report.clawed_back = sum(m["clawed_back"] for m in report.by_month)
    report.adjusted_out = sum(m["adjusted_out"] for m in report.by_month)
    if report.issued:
        report.breakage_rate = (Decimal(report.expired) / report.issued).quantize(Decimal("0.0001"))
    return report
