"""RFM scores, RFM segments and activity status: who buys, how often, how much, and who is slipping away.

**Scores** (`Member.rfm_recency`, `rfm_frequency`, `rfm_monetary`, 1-5) are quintiles among the members with at
least one order (`last_order_at` set), 5 the best fifth:
- recency by `last_order_at` (the most recent fifth scores 5),
- frequency by `order_count`, monetary by `lifetime_spend` (net of refunds).
A member's score is `1 + (RANK() - 1) * 5 / N` over the ordered values (N = members with an order): the same fifths
as `NTILE(5)` when values are distinct, but **ties share a score**. NTILE would cut a block of equal values at an
arbitrary member (with most customers on one order, half of them F1 and half F2, changing from run to run with no
change in the data); here every one-order customer has the same F, that of the lowest position of the block.
Members who never ordered have no scores and no segment.

**Segments**: the recency score against FM = the average of frequency and monetary, rounded up, on the grid below
(the widely used 11-segment RFM map; rows R 5 to 1, columns FM 1 to 5).

**Activity status** (`Member.activity_status`), first rule that matches:
- `no_purchase`: no order yet;
- `active`: last order less than LOYALTY_DORMANT_DAYS (30) days ago;
- `churn_risk`: no order for LOYALTY_CHURN_RISK_DAYS (90) days or more, or dormant while in a valuable segment
  going quiet (at risk, can't lose them): the members a win-back campaign is for;
- `dormant`: the rest, no order for 30 days or more (沉睡会员).
Days are 24-hour periods back from the refresh's moment, as in the segment filter "days since last order".

**Refresh** (`rfm_refresh`): set-based, no Python loop over members. One statement computes every member's scores
and segment into a temporary table (window functions over the whole population: quintiles are global, so a partial
refresh would be wrong); then the members are updated in batches of ids, each one transaction writing only the rows
whose scores, segment or status changed (a nightly rerun rewrites a few percent of rows, not all), locked in id order
first on PostgreSQL. The status is computed in the UPDATE from the row as it is then, so an order recorded while the
refresh runs is not overwritten by a stale "dormant". `rfm_updated_at` is when a member's RFM values last changed.

Who runs it:
- the nightly job `members.refresh_rfm` (members/tasks.py; a JobRun per local date, resumable from its cursor;
  schedule in members/migrations/0012_rfm_status_tags.py), and `manage.py refresh_rfm`;
- after an order import (members.importing.orders.orders_import): the same job is queued once the import has
  completed, with the period `import <run id>` (once per import; never in a dry run);
- an order makes its member `active` at once (`activity_on_order`, in LOYALTY_ORDER_HANDLERS); their scores follow
  at the next refresh.
"""
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from .jobs import job_enqueue
from .models import ActivityStatus, Member, RfmSegment

S = RfmSegment
# fmt: off
# The segment of each (R, FM) cell. Rows: R = 5 (bought most recently) down to 1; columns: FM = 1 .. 5.
SEGMENT_GRID = {
    #      FM=1              FM=2                   FM=3                   FM=4         FM=5
    5: (S.NEW_CUSTOMERS,  S.POTENTIAL_LOYALISTS, S.POTENTIAL_LOYALISTS, S.CHAMPIONS, S.CHAMPIONS),
    4: (S.PROMISING,      S.POTENTIAL_LOYALISTS, S.POTENTIAL_LOYALISTS, S.LOYAL,     S.LOYAL),
    3: (S.ABOUT_TO_SLEEP, S.ABOUT_TO_SLEEP,      S.NEED_ATTENTION,      S.LOYAL,     S.LOYAL),
    2: (S.HIBERNATING,    S.HIBERNATING,         S.AT_RISK,             S.AT_RISK,   S.CANT_LOSE),
    1: (S.LOST,           S.HIBERNATING,         S.AT_RISK,             S.AT_RISK,   S.CANT_LOSE),
}
# fmt: on
# Dormant members in these segments bought often or much: their silence is a churn risk, not a nap.
CHURN_RISK_SEGMENTS = (S.AT_RISK, S.CANT_LOSE)

DEFAULT_BATCH_SIZE = 50_000  # members per transaction (a few hundred ms of row locks on PostgreSQL)
SCORES_TABLE = "rfm_scores"
REFRESH_JOB = "members.refresh_rfm"  # the Celery task (members/tasks.py) that runs `rfm_refresh` as a job
# The scoring statement sorts the buyers three times (one window each): with PostgreSQL's default 4 MB a million
# members spill to disk; the statement's own transaction raises it for itself only.
SCORING_WORK_MEM = "128MB"
# A refresh that rewrote at least this share of the members refreshes the table's statistics (_statistics_refresh).
REWRITTEN_SHARE = 0.2


def fm_score(frequency: int, monetary: int) -> int:
    """The grid's column: the average of the frequency and monetary scores, rounded up."""
    return (frequency + monetary + 1) // 2


def rfm_segment_for(recency: int, frequency: int, monetary: int) -> str:
    """The segment of a member with these scores (SEGMENT_GRID)."""
    return SEGMENT_GRID[recency][fm_score(frequency, monetary) - 1].value


def activity_status_for(last_order_at: datetime | None, segment: str, now: datetime) -> str:
    """The activity status rule (module docstring) for one member, in Python: the SQL below is the same rule."""
    dormant_before, churn_before = status_cutoffs(now)
    if last_order_at is None:
        return ActivityStatus.NO_PURCHASE
    if last_order_at > dormant_before:
        return ActivityStatus.ACTIVE
    if last_order_at <= churn_before or segment in CHURN_RISK_SEGMENTS:
        return ActivityStatus.CHURN_RISK
    return ActivityStatus.DORMANT


def status_cutoffs(now: datetime) -> tuple[datetime, datetime]:
    """(dormant_before, churn_before): a last order at or before these moments is dormant / a churn risk."""
    return (
        now - timedelta(days=settings.LOYALTY_DORMANT_DAYS),
        now - timedelta(days=settings.LOYALTY_CHURN_RISK_DAYS),
    )


# --- SQL ------------------------------------------------------------------------------------------------------------


def _segment_sql(r: str, f: str, m: str) -> str:
    fm = f"(({f} + {m} + 1) / 2)"
    branches = " ".join(
        f"WHEN {recency * 10 + column} THEN '{segment.value}'"
        for recency, row in SEGMENT_GRID.items()
        for column, segment in enumerate(row, start=1)
    )
    return f"CASE {r} * 10 + {fm} {branches} ELSE '' END"


def _status_sql(last_order_at: str, segment: str) -> str:
    """The activity status of a row, with %(dormant_before)s and %(churn_before)s as parameters."""
    churn_segments = ", ".join(f"'{segment.value}'" for segment in CHURN_RISK_SEGMENTS)
    return f"""CASE WHEN {last_order_at} IS NULL THEN '{ActivityStatus.NO_PURCHASE.value}'
                    WHEN {last_order_at} > %(dormant_before)s THEN '{ActivityStatus.ACTIVE.value}'
                    WHEN {last_order_at} <= %(churn_before)s OR {segment} IN ({churn_segments})
                        THEN '{ActivityStatus.CHURN_RISK.value}'
                    ELSE '{ActivityStatus.DORMANT.value}' END"""


def _quintile_sql(column: str) -> str:
    return f"1 + (RANK() OVER (ORDER BY {column}) - 1) * 5 / COUNT(*) OVER ()"


# Every member once: the scored ones (at least one order) with their quintiles and segment, the others without.
SCORES_SQL = f"""
CREATE TEMPORARY TABLE {SCORES_TABLE} AS
SELECT q.id, q.r, q.f, q.m, {_segment_sql("q.r", "q.f", "q.m")} AS segment
FROM (
    SELECT id,
           {_quintile_sql("last_order_at")} AS r,
           {_quintile_sql("order_count")} AS f,
           {_quintile_sql("lifetime_spend")} AS m
    FROM members_member WHERE last_order_at IS NOT NULL
) q
UNION ALL
SELECT id, NULL, NULL, NULL, '' FROM members_member WHERE last_order_at IS NULL
"""

# The next batch: its last id and how many members (and scored members) it holds.
BATCH_SQL = f"""
SELECT MAX(b.id), COUNT(*), COUNT(b.r)
FROM (SELECT id, r FROM {SCORES_TABLE} WHERE id > %(after)s ORDER BY id LIMIT %(batch_size)s) b
"""


def _changed_sql(member: str, scores: str, distinct: str) -> str:
    return f"""({member}.rfm_recency {distinct} {scores}.r OR {member}.rfm_frequency {distinct} {scores}.f
                OR {member}.rfm_monetary {distinct} {scores}.m OR {member}.rfm_segment <> {scores}.segment
                OR {member}.activity_status <> {_status_sql(f"{member}.last_order_at", f"{scores}.segment")})"""


def _set_sql(member: str, scores: str) -> str:
    return f"""rfm_recency = {scores}.r, rfm_frequency = {scores}.f, rfm_monetary = {scores}.m,
               rfm_segment = {scores}.segment,
               activity_status = {_status_sql(f"{member}.last_order_at", f"{scores}.segment")},
               rfm_updated_at = %(now)s"""


# The batch's id range is stated on both tables: the planners do not carry a range across the join, and without it
# PostgreSQL scans every member (and hashes every score) for each batch.
_IN_BATCH = "{t}.id > %(lo)s AND {t}.id <= %(hi)s"

# PostgreSQL: the rows to change are locked in id order first (a CTE with FOR UPDATE runs to the end before the
# UPDATE), FOR NO KEY UPDATE as members.locking takes every multi-row member lock, but only the rows that change, so
# the refresh never deadlocks with an order or a batch of another job; the status is then computed from each row's
# latest version.
UPDATE_SQL_POSTGRESQL = f"""
WITH todo AS (
    SELECT m.id, s.r, s.f, s.m, s.segment FROM members_member m JOIN {SCORES_TABLE} s ON s.id = m.id
    WHERE {_IN_BATCH.format(t="m")} AND {_IN_BATCH.format(t="s")}
      AND {_changed_sql("m", "s", "IS DISTINCT FROM")}
    ORDER BY m.id
    FOR NO KEY UPDATE OF m
)
UPDATE members_member AS m SET {_set_sql("m", "todo")}
FROM todo
WHERE m.id = todo.id
"""
# SQLite writes one transaction at a time: no row locks to order.
UPDATE_SQL_SQLITE = f"""
UPDATE members_member SET {_set_sql("members_member", "s")}
FROM {SCORES_TABLE} s
WHERE members_member.id = s.id AND {_IN_BATCH.format(t="members_member")} AND {_IN_BATCH.format(t="s")}
  AND {_changed_sql("members_member", "s", "IS NOT")}
"""


@dataclass
class RfmRefreshResult:
    members: int = 0  # members looked at
    scored: int = 0  # of them with at least one order (scores and segment)
    updated: int = 0  # rows whose scores, segment or status changed

    def add(self, other: "RfmRefreshResult") -> None:
        self.members += other.members
        self.scored += other.scored
        self.updated += other.updated


def rfm_refresh(
    *, now: datetime | None = None, batch_size: int = DEFAULT_BATCH_SIZE, after: int = 0, on_batch=None
) -> RfmRefreshResult:
    """Score every member, name their segment and set their activity status as of `now` (module docstring).

    `after` skips members with an id up to it (a resumed job); `on_batch(last_member_id, batch_result)` is called
    inside each batch's transaction, so what it records commits with the batch."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    now = now or timezone.now()
    dormant_before, churn_before = status_cutoffs(now)
    adapt = connection.ops.adapt_datetimefield_value
    params = {"now": adapt(now), "dormant_before": adapt(dormant_before), "churn_before": adapt(churn_before)}
    update_sql = UPDATE_SQL_POSTGRESQL if connection.vendor == "postgresql" else UPDATE_SQL_SQLITE
    result = RfmRefreshResult()
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {SCORES_TABLE}")
        with transaction.atomic():
            if connection.vendor == "postgresql":
                cursor.execute(f"SET LOCAL work_mem = '{SCORING_WORK_MEM}'")
            cursor.execute(SCORES_SQL)
        try:
            cursor.execute(f"CREATE UNIQUE INDEX {SCORES_TABLE}_id ON {SCORES_TABLE} (id)")
            if connection.vendor == "postgresql":
                cursor.execute(f"ANALYZE {SCORES_TABLE}")
            while True:
                with transaction.atomic():
                    cursor.execute(BATCH_SQL, {"after": after, "batch_size": batch_size})
                    hi, members, scored = cursor.fetchone()
                    if hi is None:
                        break
                    cursor.execute(update_sql, {**params, "lo": after, "hi": hi})
                    batch = RfmRefreshResult(members=members, scored=scored, updated=cursor.rowcount)
                    result.add(batch)
                    after = hi
                    if on_batch is not None:
                        on_batch(after, batch)
        finally:
            cursor.execute(f"DROP TABLE IF EXISTS {SCORES_TABLE}")
    if result.updated and result.updated >= result.members * REWRITTEN_SHARE:
        _statistics_refresh()
    return result


def _statistics_refresh() -> None:
    """After a refresh that rewrote a large share of the members (the first scoring, a big import): on PostgreSQL,
    VACUUM (ANALYZE) the member table at once rather than when autovacuum gets to it. Segment counts are index-only
    scans, which visit every heap page while the visibility map is cleared (a million-member count went from 0.1 s
    to 1.8 s), and the planner would go on estimating segments and statuses from before the refresh. Inside a
    transaction (tests, a caller's atomic block) VACUUM cannot run: ANALYZE only."""
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE members_member" if connection.in_atomic_block else "VACUUM (ANALYZE) members_member")


# --- Hooks ----------------------------------------------------------------------------------------------------------


def activity_on_order(event) -> None:
    """An order handler (LOYALTY_ORDER_HANDLERS): a recent order makes its member active at once, so a win-back
    segment never holds someone who has just come back. Scores and segment wait for the next refresh (they are
    relative to everyone else). Costs a write only when the status changes."""
    member = event.member
    dormant_before, _churn_before = status_cutoffs(timezone.now())
    recent = member.last_order_at is not None and member.last_order_at > dormant_before
    if recent and member.activity_status != ActivityStatus.ACTIVE:
        member.activity_status = ActivityStatus.ACTIVE
        Member.objects.filter(pk=member.pk).update(activity_status=ActivityStatus.ACTIVE, rfm_updated_at=timezone.now())


def rfm_refresh_after_import(run_id: int) -> None:
    """Queue the refresh job once the import's transaction (if any) has committed: the import changed recency,
    frequency and spend, and quintiles are global, so the whole population is scored again, once per import
    (period `import <run id>`). On a worker with a broker, in process without one. Sent by its task name through
    `members.jobs` (as staff's "Run now" is), so this module does not import the tasks that import it."""
    job_enqueue(task_name=REFRESH_JOB, period=f"import {run_id}")
