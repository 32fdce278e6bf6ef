"""bench.tiers' data load and state: the set-based load (generate_series, INSERT ... SELECT) of growth events and
members, the snapshot of the members' tier state and its restore before every measured run, the run's metadata, and
the shape of the loaded data.

Split out of bench/tiers.py (which keeps the runner, `python -m bench.tiers`, and the report) so each module stays
under 600 lines; the SQL is the one the benchmark always ran. See bench/tiers.py's docstring for the layout.
"""

import json
import time
from datetime import date, datetime

from bench.common import BenchRefused, log, schema_restore, schema_strip

STALE_DAYS = 30  # cached window sums and tiers are those of a recalculation this many days before as-of
SNAPSHOT = "bench_tiers_snapshot"
META = "bench_tiers_meta"
LOADED_TABLES = ("members_member", "tiers_growthevent")
# The member columns an evaluation may write (every tier* column, the window sums, updated_at): saved after the load,
# restored before every measured run. Read from the table, so a new tier column is covered too.
STATE_COLUMNS_SQL = """
SELECT column_name FROM information_schema.columns
WHERE table_schema = current_schema() AND table_name = 'members_member'
  AND (column_name LIKE 'tier%' OR column_name IN ('growth_value', 'window_spend', 'window_orders', 'updated_at'))
ORDER BY ordinal_position
"""


def state_columns(cursor) -> list[str]:
    cursor.execute(STATE_COLUMNS_SQL)
    return [name for (name,) in cursor.fetchall()]


def as_of_moment(day: date) -> datetime:
    from tiers.management.commands.recalculate_tiers import end_of_day

    return end_of_day(day)


# --- Load, set-based ------------------------------------------------------------------------------------------------

# Deterministic pseudo-random numbers in SQL: u(x, seed) is uniform on [0, 1) and depends only on its arguments, so
# a refund can recompute its order's member, time and amount, and every run loads the same data.
HELPERS_SQL = """
CREATE OR REPLACE FUNCTION bench_u(x bigint, seed bigint) RETURNS float8 LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT (hashint8extended(x, seed) & 281474976710655)::float8 / 281474976710656.0 $$;
-- A member's spending level: log-normal (sigma 1.1), so tiers form a pyramid.
CREATE OR REPLACE FUNCTION bench_level(i bigint) RETURNS float8 LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT exp(1.1 * sqrt(-2 * ln(greatest(bench_u(i, 21), 1e-12))) * cos(2 * pi() * bench_u(i, 22))) $$;
-- Days since the member joined: uniform over the last 3 years.
CREATE OR REPLACE FUNCTION bench_age_days(i bigint) RETURNS float8 LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT bench_u(i, 11) * 1095 $$;
"""
HELPERS_DROP_SQL = """
DROP FUNCTION IF EXISTS bench_u(bigint, bigint);
DROP FUNCTION IF EXISTS bench_level(bigint);
DROP FUNCTION IF EXISTS bench_age_days(bigint);
"""

# Event k (0-based). Every 50th event (k % 50 = 49) is the full refund of event k-1, which is always an order: same
# member, same occurred_at (a refund is dated at its order), negative growth and spend, orders -1. The others are
# orders (90 %) or interactions (check-in, review, share, referral at their default rule weights). Members are drawn
# with a skew (member index floor(M * u^1.5), scattered over the id range by a multiplicative permutation): 5 to 32
# events each for the 10th to 99th percentile. Events fall uniformly over the 24 months before as-of (not before the
# member joined); order amounts are the member's level x 180 x uniform(0.4, 1.6), growth 1 per currency unit (the
# default order rule, rounded down). Rows are inserted in occurred_at order, as a live system appends them.
EVENTS_SQL = """
INSERT INTO tiers_growthevent (member_id, source, amount, spend, orders, occurred_at, reference, idempotency_key,
                               created_at)
SELECT %(first)s + s.mi, t.source,
       CASE t.source WHEN 'order' THEN floor(o.spend)::bigint WHEN 'refund' THEN -floor(o.spend)::bigint
                     WHEN 'check_in' THEN 5 WHEN 'review' THEN 20 WHEN 'share' THEN 5 ELSE 100 END,
       CASE t.source WHEN 'order' THEN o.spend WHEN 'refund' THEN -o.spend ELSE 0 END,
       CASE t.source WHEN 'order' THEN 1 WHEN 'refund' THEN -1 ELSE 0 END,
       w.occurred_at,
       CASE WHEN t.source IN ('order', 'refund') THEN 'BO' || e.b ELSE '' END,
       CASE t.source WHEN 'order' THEN 'order:BO' || e.b WHEN 'refund' THEN 'refund:BR' || e.k
                     ELSE t.source || ':B' || e.k END,
       w.occurred_at
FROM generate_series(0, %(events)s - 1) AS g(k)
CROSS JOIN LATERAL (SELECT g.k AS k, g.k %% 50 = 49 AS refund,
                           CASE WHEN g.k %% 50 = 49 THEN g.k - 1 ELSE g.k END AS b) AS e
CROSS JOIN LATERAL (
    SELECT (floor(%(members)s * power(bench_u(e.b, 1), 1.5))::bigint * 2147483647) %% %(members)s AS mi
) AS s
CROSS JOIN LATERAL (
    SELECT CASE WHEN e.refund THEN 'refund' WHEN e.b %% 50 = 48 THEN 'order'
                WHEN bench_u(e.b, 5) < 0.9 THEN 'order' WHEN bench_u(e.b, 5) < 0.95 THEN 'check_in'
                WHEN bench_u(e.b, 5) < 0.98 THEN 'review' WHEN bench_u(e.b, 5) < 0.995 THEN 'share'
                ELSE 'referral' END AS source
) AS t
CROSS JOIN LATERAL (
    SELECT round(greatest(1, 180 * bench_level(s.mi) * (0.4 + 1.2 * bench_u(e.b, 4)))::numeric, 2) AS spend
) AS o
CROSS JOIN LATERAL (
    SELECT %(as_of)s::timestamptz
           - make_interval(secs => bench_u(e.b, 3) * least(730, bench_age_days(s.mi)) * 86400) AS occurred_at
) AS w
ORDER BY w.occurred_at
"""

# Members with ids first..first+M-1 and the state a recalculation STALE_DAYS before as-of would have left: window
# sums as of then (stale: the run refreshes them), the tier they qualified for then (15 % one rung higher, a tier
# they still hold from an earlier validity), upper-tier validities ending from 36 days before as-of to 11 months
# after (about 10 % due: renewals and downgrades), 0.3 % of upper-tier members with a validity that ended 13-15
# months ago (a backlog: a renewal or downgrade that is still in the past, decided in a second round), 0.5 % on a
# staff override to gold (40 % of them ended before as-of, 40 % end later, 20 % open-ended), their earned tier and
# its validity put aside in tier_before_override / tier_expires_before_override as tier_override does. Lifetime
# spend, order count and first/last order from all events. Contact columns filled (their indexes are part of every
# write that is not HOT).
MEMBERS_SQL = """
INSERT INTO members_member (
    id, external_id, email, phone, name, region, joined_at, email_opt_in, sms_opt_in, referral_code,
    tier_id, tier_expires_at, tier_grace_until, tier_overridden, tier_override_until, tier_override_reason,
    tier_before_override_id, tier_expires_before_override, growth_value, window_spend, window_orders,
    points_balance, points_pending, points_debt,
    lifetime_spend, order_count, first_order_at, last_order_at, created_at, updated_at, blocked_reason, is_blocked
)
SELECT %(first)s + i, 'bt-' || i, 'member' || i || '@bench.example', '+8613' || lpad(i::text, 9, '0'),
       'Bench member ' || i, (ARRAY['Shanghai', 'Beijing', 'Guangdong', 'Zhejiang', 'Jiangsu', 'Sichuan', 'Hubei',
                                   'Fujian'])[1 + i %% 8],
       j.joined_at, i %% 3 = 0, i %% 5 = 0, 'BT' || lpad(i::text, 10, '0'),
       CASE WHEN ovr.ovr_on THEN {gold_id} ELSE {tier_id_at_pos} END,
       CASE WHEN ovr.ovr_on THEN ovr.until ELSE x.expires_at END, NULL,
       ovr.ovr_on, ovr.until, CASE WHEN ovr.ovr_on THEN 'Bench: goodwill' ELSE '' END,
       CASE WHEN ovr.ovr_on THEN {tier_id_at_pos} END, CASE WHEN ovr.ovr_on THEN x.expires_at END,
       s.growth_value, s.window_spend, s.window_orders, 0, 0, 0,
       greatest(coalesce(a.lifetime_spend, 0), 0), greatest(coalesce(a.order_count, 0), 0),
       a.first_order_at, a.last_order_at, j.joined_at, j.joined_at, '', false
FROM generate_series(0, %(members)s - 1) AS i
LEFT JOIN (
    SELECT member_id - %(first)s AS mi,
           sum(amount) FILTER (WHERE occurred_at > %(stale_start)s AND occurred_at <= %(stale_as_of)s) AS growth,
           sum(spend) FILTER (WHERE occurred_at > %(stale_start)s AND occurred_at <= %(stale_as_of)s) AS spend,
           sum(orders) FILTER (WHERE occurred_at > %(stale_start)s AND occurred_at <= %(stale_as_of)s) AS orders,
           sum(spend) AS lifetime_spend, sum(orders) AS order_count,
           min(occurred_at) FILTER (WHERE source = 'order') AS first_order_at,
           max(occurred_at) FILTER (WHERE source = 'order') AS last_order_at
    FROM tiers_growthevent GROUP BY member_id
) AS a ON a.mi = i
CROSS JOIN LATERAL (
    SELECT %(as_of)s::timestamptz - make_interval(secs => bench_age_days(i) * 86400) AS joined_at
) AS j
CROSS JOIN LATERAL (
    SELECT greatest(coalesce(a.growth, 0), 0)::bigint AS growth_value,
           greatest(coalesce(a.spend, 0), 0)::numeric(14, 2) AS window_spend,
           greatest(coalesce(a.orders, 0), 0)::int AS window_orders
) AS s
CROSS JOIN LATERAL (SELECT {qualified_position} AS q) AS q
CROSS JOIN LATERAL (SELECT bench_u(i, 32) < 0.005 AS ovr_on) AS o
CROSS JOIN LATERAL (
    SELECT CASE WHEN q.q >= 0 AND bench_u(i, 31) < 0.15 THEN least(q.q + 1, {top_pos})
                ELSE greatest(q.q, 0) END AS pos
) AS p
CROSS JOIN LATERAL (
    SELECT o.ovr_on,
           CASE WHEN NOT o.ovr_on THEN NULL
                WHEN bench_u(i, 33) < 0.4
                    THEN %(as_of)s::timestamptz - make_interval(secs => bench_u(i, 34) * 20 * 86400)
                WHEN bench_u(i, 33) < 0.8
                    THEN %(as_of)s::timestamptz + make_interval(secs => bench_u(i, 34) * 90 * 86400)
                END AS until
) AS ovr
CROSS JOIN LATERAL (
    SELECT CASE WHEN ({validity_at_pos}) IS NULL THEN NULL
                WHEN bench_u(i, 35) < 0.003
                    THEN %(as_of)s::timestamptz - make_interval(secs => (395 + bench_u(i, 36) * 60) * 86400)
                ELSE %(as_of)s::timestamptz + make_interval(secs => (-36 + bench_u(i, 36) * 365) * 86400)
           END AS expires_at
) AS x
ORDER BY i
"""


def data_load(args) -> dict:
    """Load `args.events` events and `args.members` members set-based; returns the seconds of each step."""
    from django.db import connection

    from tiers.evaluation import Ladder
    from tiers.selectors import tier_ladder, tier_policy
    from tiers.windows import shift, window_bound

    as_of = as_of_moment(args.as_of)
    policy = tier_policy()
    stale_as_of = shift(as_of, days=-STALE_DAYS)
    ladder = Ladder(tier_ladder())
    codes = [tier.code for tier in ladder.tiers]
    gold_pos = codes.index("gold") if "gold" in codes else len(codes) - 1
    timings = {}
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM members_member")
        if cursor.fetchone()[0]:
            raise BenchRefused("the database already has members: load into a fresh one (--reset)")
        cursor.execute("SET work_mem = '1GB'")
        cursor.execute("SET maintenance_work_mem = '2GB'")
        cursor.execute(HELPERS_SQL)
        saved = schema_strip(cursor, LOADED_TABLES)
        cursor.execute("SELECT nextval(pg_get_serial_sequence('members_member', 'id'))")
        first = cursor.fetchone()[0]
        params = {
            "first": first,
            "members": args.members,
            "events": args.events,
            "as_of": as_of,
            "stale_as_of": stale_as_of,
            "stale_start": window_bound(stale_as_of, policy)[0] or datetime(1970, 1, 1, tzinfo=as_of.tzinfo),
        }

        log(f"load: {args.events:,} growth events")
        started = time.perf_counter()
        cursor.execute(EVENTS_SQL, params)
        timings["growth events"] = time.perf_counter() - started

        log(f"load: {args.members:,} members")
        started = time.perf_counter()
        cursor.execute(
            MEMBERS_SQL.format(
                tier_id_at_pos=ladder.tier_id_at("p.pos"),
                validity_at_pos=ladder.validity_at("p.pos"),
                qualified_position=ladder.qualified_position("s"),
                gold_id=ladder.tiers[gold_pos].pk,
                top_pos=len(codes) - 1,
            ),
            params,
        )
        cursor.execute(
            "SELECT setval(pg_get_serial_sequence('members_member', 'id'), %s)", [first + args.members - 1]
        )
        timings["members (with the aggregate of their events)"] = time.perf_counter() - started

        started = time.perf_counter()
        schema_restore(cursor, saved)
        timings["indexes and constraints"] = time.perf_counter() - started

        log("load: VACUUM (ANALYZE)")
        started = time.perf_counter()
        for name in (*LOADED_TABLES, "tiers_tierchange"):
            cursor.execute(f"VACUUM (ANALYZE) {name}")
        # The load's dirty pages are written now, not by a checkpoint in the middle of the measured run.
        cursor.execute("CHECKPOINT")
        timings["VACUUM (ANALYZE), CHECKPOINT"] = time.perf_counter() - started

        started = time.perf_counter()
        columns = ", ".join(state_columns(cursor))
        cursor.execute(f"DROP TABLE IF EXISTS {SNAPSHOT}")
        cursor.execute(f"CREATE TABLE {SNAPSHOT} AS SELECT id, {columns} FROM members_member")
        cursor.execute(f"ALTER TABLE {SNAPSHOT} ADD PRIMARY KEY (id)")
        cursor.execute(HELPERS_DROP_SQL)
        cursor.execute("RESET work_mem")
        cursor.execute("RESET maintenance_work_mem")
        timings["state snapshot"] = time.perf_counter() - started
    return timings


def meta_save(values: dict) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TABLE IF NOT EXISTS {META} (key text PRIMARY KEY, value text NOT NULL)")
        for key, value in values.items():
            cursor.execute(
                f"INSERT INTO {META} (key, value) VALUES (%s, %s) "
                "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                [key, json.dumps(value)],
            )


def meta_load() -> dict:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"SELECT to_regclass('{META}') IS NOT NULL AND to_regclass('{SNAPSHOT}') IS NOT NULL")
        if not cursor.fetchone()[0]:
            return {}
        cursor.execute(f"SELECT key, value FROM {META}")
        return {key: json.loads(value) for key, value in cursor.fetchall()}


def state_restore() -> float:
    """Put the members back in the loaded state (snapshot), drop the tier history the runs wrote, and rewrite the
    table in id order, packed as after the load (CLUSTER), then VACUUM (ANALYZE). Returns seconds."""
    from django.db import connection

    started = time.perf_counter()
    with connection.cursor() as cursor:
        columns = state_columns(cursor)
        assignments = ", ".join(f"{c} = s.{c}" for c in columns)
        differs = " OR ".join(f"m.{c} IS DISTINCT FROM s.{c}" for c in columns)
        cursor.execute(
            f"UPDATE members_member AS m SET {assignments} FROM {SNAPSHOT} AS s WHERE m.id = s.id AND ({differs})"
        )
        cursor.execute("TRUNCATE tiers_tierchange")
        cursor.execute("CLUSTER members_member USING members_member_pkey")
        cursor.execute("ALTER TABLE members_member SET WITHOUT CLUSTER")
        cursor.execute("VACUUM (ANALYZE) members_member")
        cursor.execute("VACUUM (ANALYZE) tiers_tierchange")
        cursor.execute("CHECKPOINT")
    return time.perf_counter() - started


def data_shape(as_of: datetime) -> dict:
    """What the loaded data looks like (before any run): events by source and in the window, members by tier."""
    from django.db import connection

    from tiers.selectors import tier_policy
    from tiers.windows import window_bound

    start, inclusive = window_bound(as_of, tier_policy())
    with connection.cursor() as cursor:
        cursor.execute(
            f"""SELECT source, count(*), count(*) FILTER (WHERE occurred_at {'>=' if inclusive else '>'} %s
                                                          AND occurred_at <= %s)
               FROM tiers_growthevent GROUP BY source ORDER BY count(*) DESC""",
            [start or datetime(1970, 1, 1, tzinfo=as_of.tzinfo), as_of],
        )
        sources = [[s, n, w] for s, n, w in cursor.fetchall()]
        cursor.execute(
            """SELECT t.code, count(m.id),
                      count(m.id) FILTER (WHERE NOT m.tier_overridden AND m.tier_expires_at <= %(as_of)s),
                      count(m.id) FILTER (WHERE m.tier_overridden),
                      count(m.id) FILTER (WHERE m.tier_overridden AND m.tier_override_until <= %(as_of)s)
               FROM members_member m JOIN tiers_tier t ON t.id = m.tier_id GROUP BY t.code, t.rank ORDER BY t.rank""",
            {"as_of": as_of},
        )
        tiers = [list(row) for row in cursor.fetchall()]
        cursor.execute(
            "SELECT min(joined_at), max(joined_at), count(*) FILTER (WHERE order_count = 0) FROM members_member"
        )
        joined_min, joined_max, no_orders = cursor.fetchone()
        cursor.execute("SELECT min(occurred_at), max(occurred_at) FROM tiers_growthevent")
        occurred_min, occurred_max = cursor.fetchone()
        cursor.execute(
            "SELECT pg_total_relation_size('members_member'), pg_total_relation_size('tiers_growthevent'), "
            "pg_relation_size('tiers_growthevent'), pg_relation_size('growth_member_occurred_idx')"
        )
        members_bytes, events_bytes, events_heap, events_index = cursor.fetchone()
    return {
        "window_start": start.isoformat() if start else None,
        "sources": sources,
        "tiers": tiers,
        "joined": [joined_min.isoformat(), joined_max.isoformat()],
        "members_without_orders": no_orders,
        "occurred": [occurred_min.isoformat(), occurred_max.isoformat()],
        "members_mib": members_bytes / 2**20,
        "events_mib": events_bytes / 2**20,
        "events_heap_mib": events_heap / 2**20,
        "events_member_occurred_idx_mib": events_index / 2**20,
    }
