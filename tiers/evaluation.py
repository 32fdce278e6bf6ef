"""The tier rules as set-based SQL over a range of member ids: the one code path that moves members between tiers.

`evaluate_range` serves the nightly `recalculate_tiers` (ranges of thousands of members) and the event path of a
single order or interaction (a range of one member), so an upgrade on an order and one found by the job are the same
rule. It runs in the caller's transaction with the members locked, in three steps:

1. refresh the cached window sums (growth_value, window_spend, window_orders) from the growth events in the window;
2. decide, for every member whose state calls for it, one rule (below) into the temporary table `tier_decision`;
3. write a TierChange per move or renewal and update the members; repeat 2-3 until nothing is left to decide (a
   backlog can chain: a renewal still in the past, a grace period already over, ...).

Rules, first match wins (mode "normal", the nightly run and every event):
- join:          the member holds no tier yet -> the best tier they qualify for.
- override_end:  a staff override has ended -> the tier earned before it resumes with its validity, or what they
                 qualify for now if higher (fresh validity); if that validity ran out during the override, it is
                 re-evaluated as at any expiry (at most `downgrade_steps` down).
- (overridden):  otherwise an override pins the tier: nothing else happens, not even an upgrade.
- upgrade:       they qualify for a higher tier -> up at once, fresh validity.
- clear_expiry / set_expiry: the tier's validity was removed / added by staff -> expiry follows.
- renewal:       validity over, still qualified -> kept, expiry extended from the old expiry (no drift).
- grace:         validity over, not qualified, the policy grants grace -> kept until expiry + grace days.
- downgrade:     validity (and grace) over, not qualified -> the best tier they qualify for, but at most
                 `downgrade_steps` rungs down, with a fresh validity from the moment the old one ended.
Mode "upgrades" applies join and upgrade only; mode "ladder" (after staff change thresholds) moves every member not
pinned by an override to the best tier they qualify for, at most `downgrade_steps` rungs down, reason ladder_change.
Overridden members are left alone in both.
"""
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.db import connection
from django.db.models import TextChoices
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from members.locking import members_lock
from members.services import ORDER_CLOCK_SKEW

from . import webhooks
from .models import Tier, TierChange, TierPolicy
from .windows import shift_sql, window_bound

# What each rule did, for people (admin messages, command output).
RULE_LABELS = {
    "join": _("joined"),
    "upgrade": _("upgrades"),
    "renewal": _("renewals"),
    "grace": _("grace periods started"),
    "downgrade": _("downgrades"),
    "ladder": _("moved by the ladder change"),
    "override_end": _("overrides ended"),
    "set_expiry": _("validity set"),
    "clear_expiry": _("validity removed"),
}


class Mode(TextChoices):
    NORMAL = "normal"
    UPGRADES = "upgrades"
    LADDER = "ladder"


@dataclass
class EvaluationResult:
    refreshed: int = 0
    changes: Counter = field(default_factory=Counter)
    rounds: int = 0

    def add(self, other: "EvaluationResult") -> None:
        self.refreshed += other.refreshed
        self.changes.update(other.changes)
        self.rounds = max(self.rounds, other.rounds)


# Rules that write a TierChange; the others (grace, set/clear expiry) only update the member.
_REASON_SQL = f"""CASE r.rule
    WHEN 'join' THEN '{{join}}'
    WHEN 'upgrade' THEN '{{upgrade}}'
    WHEN 'renewal' THEN '{TierChange.Reason.RENEWAL}'
    WHEN 'downgrade' THEN '{TierChange.Reason.DOWNGRADE}'
    WHEN 'ladder' THEN '{TierChange.Reason.LADDER_CHANGE}'
    WHEN 'override_end' THEN CASE
        WHEN r.new_pos > r.cur_pos THEN '{TierChange.Reason.UPGRADE}'
        WHEN r.new_pos < r.cur_pos THEN '{TierChange.Reason.DOWNGRADE}'
        ELSE '{TierChange.Reason.RENEWAL}' END
    END"""

MAX_ROUNDS = 60
# After these, the new expiry or grace end may still lie before the as-of moment (a backlog): decide again.
_CHAINING_RULES = {"renewal", "grace", "downgrade", "override_end"}


def sql_number(value) -> str:
    """Ladder numbers are inlined (ints and Decimals from the database only): it keeps parameters to the datetimes."""
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        raise TypeError(f"not a number: {value!r}")
    return str(value)


class Ladder:
    """The ladder as SQL: positions 0..n-1 by rank, and the CASE expressions that map between them."""

    def __init__(self, tiers: list[Tier]):
        self.tiers = sorted(tiers, key=lambda tier: tier.rank)

    def position_of_tier_id(self, column: str) -> str:
        # An unsaved tier (a ladder-change preview) has no id and no members yet.
        whens = " ".join(f"WHEN {sql_number(t.pk)} THEN {pos}" for pos, t in enumerate(self.tiers) if t.pk is not None)
        return f"CASE {column} {whens} ELSE -1 END" if whens else "-1"

    def tier_id_at(self, position: str) -> str:
        whens = " ".join(f"WHEN {pos} THEN {sql_number(t.pk)}" for pos, t in enumerate(self.tiers))
        return f"CASE {position} {whens} END" if whens else "NULL"

    def validity_at(self, position: str) -> str:
        whens = " ".join(
            f"WHEN {pos} THEN {sql_number(t.validity_months)}"
            for pos, t in enumerate(self.tiers)
            if t.validity_months is not None
        )
        return f"CASE {position} {whens} END" if whens else "NULL"

    def qualified_position(self, alias: str = "m") -> str:
        """The highest position whose every set threshold the window sums meet (-1: none, on a ladder whose entry
        tier has thresholds)."""
        whens = []
        for pos in range(len(self.tiers) - 1, -1, -1):
            tier = self.tiers[pos]
            conditions = []
            if tier.min_growth is not None:
                conditions.append(f"{alias}.growth_value >= {sql_number(tier.min_growth)}")
            if tier.min_spend is not None:
                conditions.append(f"{alias}.window_spend >= {sql_number(tier.min_spend)}")
            if tier.min_orders is not None:
                conditions.append(f"{alias}.window_orders >= {sql_number(tier.min_orders)}")
            whens.append(f"WHEN {' AND '.join(conditions) or '1 = 1'} THEN {pos}")
        return f"CASE {' '.join(whens)} ELSE -1 END" if whens else "-1"


def _datetime_param(value: datetime):
    return connection.ops.adapt_datetimefield_value(value)


def _as_of_table() -> str:
    """A one-row derived table `p` holding the as-of moment (no CTE: SQLite reports no row count for WITH ...)."""
    cast = "::timestamptz" if connection.vendor == "postgresql" else ""
    return f"(SELECT %s{cast} AS t) p"


def ensure_decision_table() -> None:
    timestamp = "timestamp with time zone" if connection.vendor == "postgresql" else "text"
    with connection.cursor() as cursor:
        cursor.execute(
            f"""CREATE TEMP TABLE IF NOT EXISTS tier_decision (
                member_id bigint PRIMARY KEY,
                from_tier_id bigint,
                to_tier_id bigint,
                rule varchar(20) NOT NULL,
                reason varchar(20),
                note varchar(200) NOT NULL,
                changed_at {timestamp},
                new_expires_at {timestamp},
                new_grace_until {timestamp},
                clear_override boolean NOT NULL
            )"""
        )


def lock_range(lo: int, hi: int) -> None:
    """Lock the range's member rows, in primary-key order like every other batch, so that no order changes a member
    between the sums read and the decision written (PostgreSQL; SQLite's writer lock already serialises)."""
    if connection.vendor != "postgresql":
        return
    # Only the ids come back: the rows themselves are read by the set-based statements that follow.
    list(members_lock(range(lo, hi)).values_list("pk", flat=True))


def refresh_window_sums(lo: int, hi: int, as_of: datetime, policy: TierPolicy, upto: datetime | None = None) -> int:
    """Step 1: growth_value, window_spend, window_orders := the sums of the events in the window. Returns rows changed.

    Sums are clamped at zero (a refund is dated at its order, so they net out; the clamp guards hand-made data) and
    rounded to cents (SQLite sums decimals as floats). Events count up to `upto` (default `as_of`)."""
    start, inclusive = window_bound(as_of, policy)
    window = "" if start is None else f"AND occurred_at {'>=' if inclusive else '>'} %s"
    upto = as_of if upto is None else upto
    # The range again on the UPDATE's own table: PostgreSQL does not carry it through the join, and would scan
    # every member for each batch.
    params = [lo, hi, _datetime_param(upto)] + ([] if start is None else [_datetime_param(start)]) + [lo, hi, lo, hi]
    sql = f"""
        UPDATE members_member SET growth_value = a.growth, window_spend = a.spend, window_orders = a.orders
        FROM (
            SELECT m.id AS member_id,
                   CASE WHEN g.growth > 0 THEN g.growth ELSE 0 END AS growth,
                   CASE WHEN g.spend > 0 THEN g.spend ELSE 0 END AS spend,
                   CASE WHEN g.orders > 0 THEN g.orders ELSE 0 END AS orders
            FROM members_member m
            LEFT JOIN (
                SELECT member_id, SUM(amount) AS growth, ROUND(SUM(spend), 2) AS spend, SUM(orders) AS orders
                FROM tiers_growthevent
                WHERE member_id >= %s AND member_id < %s AND occurred_at <= %s {window}
                GROUP BY member_id
            ) g ON g.member_id = m.id
            WHERE m.id >= %s AND m.id < %s
        ) a
        WHERE members_member.id = a.member_id AND members_member.id >= %s AND members_member.id < %s
          AND (members_member.growth_value <> a.growth OR members_member.window_spend <> a.spend
               OR members_member.window_orders <> a.orders)
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def _reason_sql(moves_reason: str | None) -> str:
    if moves_reason is not None and moves_reason not in TierChange.Reason.values:
        raise ValueError(f"unknown reason {moves_reason!r}")
    return _REASON_SQL.format(
        join=moves_reason or TierChange.Reason.JOIN, upgrade=moves_reason or TierChange.Reason.UPGRADE
    )


def _decision_sql(
    ladder: Ladder, policy: TierPolicy, mode: Mode, note: str, scope_sql: str = "", moves_reason: str | None = None
) -> str:
    """Step 2: the INSERT INTO tier_decision ... SELECT, in four layers: state (s), rule (r), outcome (o), final."""
    vendor = connection.vendor
    steps = sql_number(policy.downgrade_steps)
    grace_days = sql_number(policy.grace_days)
    cur_validity = ladder.validity_at("s.cur_pos")
    floor = f"CASE WHEN s.cur_pos - {steps} > 0 THEN s.cur_pos - {steps} ELSE 0 END"
    target = f"CASE WHEN s.q_pos > {floor} THEN s.q_pos ELSE {floor} END"
    join = "WHEN s.cur_pos < 0 AND s.q_pos >= 0 THEN 'join'"
    # At an override's end: the earned tier is a floor while its validity runs, one that steps down like any expiry
    # once it has run out during the override, and nothing when there was no earned tier.
    prev_valid = "(s.prev_exp IS NULL OR s.prev_exp > s.ovr_until)"
    prev_floor = f"""CASE WHEN s.prev_pos < 0 THEN -1 WHEN {prev_valid} THEN s.prev_pos
            WHEN s.prev_pos - {steps} > 0 THEN s.prev_pos - {steps} ELSE 0 END"""
    override_target = f"CASE WHEN s.q_pos > ({prev_floor}) THEN s.q_pos ELSE ({prev_floor}) END"
    join = "WHEN s.cur_pos < 0 AND s.q_pos >= 0 THEN 'join'"
    if mode == Mode.UPGRADES:
        rule = f"CASE {join} WHEN s.ovr THEN NULL WHEN s.cur_pos >= 0 AND s.q_pos > s.cur_pos THEN 'upgrade' END"
    elif mode == Mode.LADDER:
        rule = f"""CASE {join}
            WHEN s.cur_pos < 0 OR s.ovr THEN NULL
            WHEN ({target}) <> s.cur_pos THEN 'ladder' END"""
    else:
        rule = f"""CASE {join}
            WHEN s.cur_pos < 0 THEN NULL
            WHEN s.ovr AND s.ovr_until IS NOT NULL AND s.ovr_until <= p.t AND ({override_target}) >= 0
                THEN 'override_end'
            WHEN s.ovr THEN NULL
            WHEN s.q_pos > s.cur_pos THEN 'upgrade'
            WHEN ({cur_validity}) IS NULL AND s.exp IS NOT NULL THEN 'clear_expiry'
            WHEN ({cur_validity}) IS NOT NULL AND s.exp IS NULL THEN 'set_expiry'
            WHEN s.exp <= p.t AND s.q_pos >= s.cur_pos THEN 'renewal'
            WHEN s.exp <= p.t AND s.grace IS NULL AND {grace_days} > 0 THEN 'grace'
            WHEN s.exp <= p.t AND (s.grace IS NULL OR s.grace <= p.t) THEN 'downgrade' END"""
    new_pos = """CASE r0.rule
            WHEN 'join' THEN r0.q_pos WHEN 'override_end' THEN r0.override_target WHEN 'upgrade' THEN r0.q_pos
            WHEN 'downgrade' THEN r0.target WHEN 'ladder' THEN r0.target
            ELSE r0.cur_pos END"""
    changed_at = """CASE r.rule
            WHEN 'override_end' THEN r.ovr_until
            WHEN 'renewal' THEN CASE WHEN r.grace IS NULL THEN r.exp ELSE r.t END
            WHEN 'downgrade' THEN COALESCE(r.grace, r.exp)
            ELSE r.t END"""
    new_validity = ladder.validity_at("o.new_pos")
    old_validity = ladder.validity_at("o.cur_pos")
    new_expires = f"""CASE
            WHEN o.rule = 'override_end' AND o.new_pos = o.prev_pos AND o.prev_valid = 1 THEN o.prev_exp
            ELSE CASE o.rule
            WHEN 'renewal' THEN {shift_sql(vendor, "o.exp", old_validity)}
            WHEN 'grace' THEN o.exp
            WHEN 'clear_expiry' THEN NULL
            WHEN 'set_expiry' THEN {shift_sql(vendor, "o.t", old_validity)}
            ELSE {shift_sql(vendor, "o.changed_at", new_validity)} END END"""
    new_grace = f"CASE o.rule WHEN 'grace' THEN {shift_sql(vendor, 'o.exp', '0', grace_days)} ELSE NULL END"
    note_sql = "CASE o.rule WHEN 'override_end' THEN 'Override ended.' ELSE %s END"
    # Optimisation fences: without them the planner pulls the layers up into one expression tree and evaluates the
    # tier CASEs once per reference (dozens of times a row) instead of once.
    fence = "OFFSET 0" if vendor == "postgresql" else "LIMIT -1 OFFSET 0"
    return f"""
        INSERT INTO tier_decision (member_id, from_tier_id, to_tier_id, rule, reason, note, changed_at,
                                   new_expires_at, new_grace_until, clear_override)
        SELECT o.member_id, o.cur_id, {ladder.tier_id_at("o.new_pos")}, o.rule, o.reason, {note_sql}, o.changed_at,
               {new_expires}, {new_grace},
               CASE WHEN o.rule IN ('override_end', 'upgrade', 'ladder', 'join') THEN TRUE ELSE FALSE END
        FROM (
            SELECT r.*, {_reason_sql(moves_reason)} AS reason, {changed_at} AS changed_at
            FROM (
                SELECT r0.*, {new_pos} AS new_pos
                FROM (
                    SELECT s.*, p.t AS t, {target} AS target, {override_target} AS override_target,
                           CASE WHEN {prev_valid} THEN 1 ELSE 0 END AS prev_valid, {rule} AS rule
                    FROM (
                        SELECT m.id AS member_id, m.tier_id AS cur_id,
                               {ladder.position_of_tier_id("m.tier_id")} AS cur_pos,
                               {ladder.qualified_position("m")} AS q_pos,
                               m.tier_expires_at AS exp, m.tier_grace_until AS grace,
                               m.tier_overridden AS ovr, m.tier_override_until AS ovr_until,
                               {ladder.position_of_tier_id("m.tier_before_override_id")} AS prev_pos,
                               m.tier_expires_before_override AS prev_exp
                        FROM members_member m
                        WHERE m.id >= %s AND m.id < %s {f"AND m.id IN ({scope_sql})" if scope_sql else ""} {fence}
                    ) s CROSS JOIN {_as_of_table()} {fence}
                ) r0 WHERE r0.rule IS NOT NULL
            ) r
        ) o
    """


def _apply_decisions(reference: str, user_id: int | None, now: datetime) -> None:
    """Step 3: history first (it reads the old tier), then the members."""
    with connection.cursor() as cursor:
        cursor.execute(
            """INSERT INTO tiers_tierchange (member_id, from_tier_id, to_tier_id, reason, reference, note, created_at,
                                             created_by_id)
               SELECT member_id, from_tier_id, to_tier_id, reason, %s, note, changed_at, %s
               FROM tier_decision WHERE reason IS NOT NULL""",
            [reference[:64], user_id],
        )
        cursor.execute(
            """UPDATE members_member SET
                   tier_id = d.to_tier_id,
                   tier_expires_at = d.new_expires_at,
                   tier_grace_until = d.new_grace_until,
                   tier_overridden = CASE WHEN d.clear_override THEN FALSE ELSE members_member.tier_overridden END,
                   tier_override_until = CASE WHEN d.clear_override THEN NULL
                                              ELSE members_member.tier_override_until END,
                   tier_override_reason = CASE WHEN d.clear_override THEN ''
                                               ELSE members_member.tier_override_reason END,
                   tier_before_override_id = CASE WHEN d.clear_override THEN NULL
                                                  ELSE members_member.tier_before_override_id END,
                   tier_expires_before_override = CASE WHEN d.clear_override THEN NULL
                                                       ELSE members_member.tier_expires_before_override END,
                   updated_at = %s
               FROM tier_decision d WHERE members_member.id = d.member_id""",
            [_datetime_param(now)],
        )


def evaluate_range(
    *,
    lo: int,
    hi: int,
    as_of: datetime | None,
    policy: TierPolicy,
    ladder: Ladder,
    mode: Mode = Mode.NORMAL,
    reference: str = "",
    note: str = "",
    user_id: int | None = None,
    lock: bool = True,
    scope_sql: str = "",
    scope_params: tuple | list = (),
    moves_reason: str | None = None,
) -> EvaluationResult:
    """Evaluate members with lo <= id < hi as of `as_of`. Call inside a transaction; `lock=False` when the caller
    already holds the member locks. Statements per call are constant: they never grow with the members in range.

    `as_of=None` is a live evaluation: as of the moment the locks are held, counting every event recorded so far
    (an order the storefront stamped a few minutes ahead included). With a moment, only what happened by then counts
    (a replay of the past).

    `scope_sql` (a SELECT of member ids, with `scope_params`) narrows the decisions to those members; `moves_reason`
    records joins and upgrades under another reason (an import's backfill: `import`)."""
    result = EvaluationResult()
    if lock:
        lock_range(lo, hi)
    upto = None
    if as_of is None:
        as_of = timezone.now()
        upto = as_of + ORDER_CLOCK_SKEW
    result.refreshed = refresh_window_sums(lo, hi, as_of, policy, upto)
    decide = _decision_sql(ladder, policy, Mode(mode), note, scope_sql, moves_reason)
    now = timezone.now()
    decided = False
    with connection.cursor() as cursor:
        for round_number in range(1, MAX_ROUNDS + 1):
            if decided:
                cursor.execute("DELETE FROM tier_decision")
            cursor.execute(decide, [note[:200], lo, hi, *scope_params, _datetime_param(as_of)])
            result.rounds = round_number
            if cursor.rowcount == 0:
                break
            decided = True
            cursor.execute("SELECT rule, count(*) FROM tier_decision GROUP BY rule")
            rules = dict(cursor.fetchall())
            result.changes.update(rules)
            mark = webhooks.tier_changes_mark()  # None (no query) when nobody subscribes to member.tier_changed
            _apply_decisions(reference, user_id, now)
            if mark is not None:  # the TierChanges just written: member.tier_changed, set-based
                new = TierChange.objects.filter(pk__gt=mark, member_id__gte=lo, member_id__lt=hi)
                webhooks.tier_changes_emit(changes=new)
            if mode != Mode.NORMAL or not rules.keys() & _CHAINING_RULES:
                break  # nothing decided can fall due again as of the same moment
        else:
            raise RuntimeError("tier evaluation did not settle")  # a rule that keeps firing is a bug, not data
        if decided:
            cursor.execute("DELETE FROM tier_decision")
    return result
