"""Tier recalculation benchmark: `tiers_recalculate` (what `manage.py recalculate_tiers` runs nightly) over a million
members and ten million growth events on PostgreSQL.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/loyalty_bench_tiers .venv/bin/python -m bench.tiers --reset \
        [--members 1000000] [--events 10000000] [--as-of 2026-11-22] [--batch-size N] [--workers N] \
        [--sweep 10000,20000,50000,100000] [--explain PATH] [--json PATH] [--skip-load]

What it does (figures printed as Markdown tables on stdout, progress on stderr):

1. Load, set-based (generate_series, INSERT ... SELECT; no ORM row): `--events` growth events over the 24 months
   before as-of, then `--members` members whose cached state is the one a recalculation about 30 days before as-of
   left (window sums as of as-of minus 30 days, tiers from them, 15 % one rung higher still within their validity,
   validities ending from 36 days before as-of to 11 months after, a 0.3 % backlog whose validity ended over a year
   ago, 0.5 % in a staff override). The secondary indexes and unique/foreign-key constraints of the two tables are
   dropped during the load and recreated exactly as migrated (checked), then VACUUM (ANALYZE) and CHECKPOINT, so the
   measured phase neither sets hint bits, nor runs on stale statistics, nor writes the load's dirty pages. The
   members' tier columns are kept in a snapshot table (`bench_tiers_snapshot`) so every measured run starts from the
   same state.
2. Run `tiers_recalculate(as_of=...)` in a fresh child process (its memory figures are its own): wall time, window
   sums refreshed, changes by rule, rounds, SQL statements in total, before the first batch and per batch, time per
   statement kind, peak RSS (ru_maxrss) and RSS after every batch. Statements are counted with an execute_wrapper
   (DEBUG stays off) put on every connection the job opens: its batches run on worker threads, each with its own
   connection. Then a second run for the same as-of, which must change nothing.
3. A batch-size sweep (`--sweep`): the state restored from the snapshot before each run (members rewritten in id
   order by CLUSTER, packed as after the load), each run under tracemalloc (the Python heap peak; the job's Python
   side is a few statements per batch, so tracemalloc barely slows it). Statements per batch must be the same at
   every size: the job issues batches x a constant.
4. `--explain PATH`: EXPLAIN (ANALYZE, BUFFERS) of every statement of one batch in the middle of the id range (each
   inside a savepoint rolled back before the real statement runs, the whole batch rolled back at the end); the
   plans go to PATH, a per-statement summary to stdout.

`--skip-load` reruns 2-4 on the loaded database (the state is restored from the snapshot first).
It needs a PostgreSQL database of its own: it creates it when missing, refuses one that already has members unless
--reset (which drops and recreates it, and only a database whose name contains "bench"), and migrates.
Not part of the test suite.
"""
import argparse
import gc
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import date, datetime

from bench.common import (
    BenchRefused,
    bench_database_prepare,
    current_rss_mib,
    django_setup,
    load_average,
    log,
    machine_description,
    max_rss_mib,
    schema_restore,
    schema_strip,
    table,
)

DEFAULT_AS_OF = date(2026, 11, 22)  # a fixed day (its last moment, site time zone): runs are comparable
DEFAULT_SWEEP = "10000,20000,50000,100000"
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


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.tiers", description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=1_000_000, help="Members to load (default 1,000,000).")
    parser.add_argument("--events", type=int, default=10_000_000, help="Growth events to load (default 10,000,000).")
    parser.add_argument(
        "--as-of",
        type=date.fromisoformat,
        default=DEFAULT_AS_OF,
        help=f"Evaluate as of the end of this day, site time zone (default {DEFAULT_AS_OF}); the data is laid out "
        "relative to it.",
    )
    parser.add_argument(
        "--batch-size", type=int, default=None, help="Batch size of the two main runs (default: the service's)."
    )
    parser.add_argument(
        "--workers", type=int, default=None,
        help="tiers_recalculate(workers=...) for every run (default: the service's own default).",
    )
    parser.add_argument(
        "--sweep",
        default=DEFAULT_SWEEP,
        help=f"Batch sizes of the sweep, comma-separated (default {DEFAULT_SWEEP}); empty: no sweep.",
    )
    parser.add_argument("--explain", metavar="PATH", help="EXPLAIN (ANALYZE, BUFFERS) one batch; plans into PATH.")
    parser.add_argument("--json", metavar="PATH", help="Also write every figure as JSON into PATH.")
    parser.add_argument("--skip-load", action="store_true", help="Reuse the loaded database (state restored first).")
    parser.add_argument("--reset", action="store_true", help="Drop and recreate the benchmark database first.")
    # Internal: one recalculation in a fresh process (its memory figures are its own).
    parser.add_argument("--recalc-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.members < 1 or args.events < 1:
        parser.error("--members and --events must be positive")
    try:
        args.sweep_sizes = [int(x) for x in args.sweep.split(",") if x.strip()]
    except ValueError:
        parser.error("--sweep takes comma-separated integers")
    if any(size < 1 for size in args.sweep_sizes) or (args.batch_size is not None and args.batch_size < 1):
        parser.error("batch sizes must be positive")
    if args.workers is not None and args.workers < 1:
        parser.error("--workers must be positive")
    if args.skip_load and args.reset:
        parser.error("--skip-load and --reset exclude each other")
    return args


def code_version() -> str:
    """The commit measured, and the application files changed beside it (the figures belong to that code)."""
    try:
        head = subprocess.run(["git", "log", "-1", "--format=%h %cI"], capture_output=True, text=True, check=True)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "tiers", "members", "points", "config"],
            capture_output=True, text=True, check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    changed = [line[3:] for line in dirty.stdout.splitlines()]
    return head.stdout.strip() + (f" + uncommitted changes in {', '.join(changed)}" if changed else "")


def as_of_moment(day: date) -> datetime:
    from tiers.management.commands.recalculate_tiers import end_of_day

    return end_of_day(day)


def default_batch_size() -> int:
    from tiers.services import RECALCULATE_BATCH_SIZE

    return RECALCULATE_BATCH_SIZE


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


# --- Measured runs ----------------------------------------------------------------------------------------------------

STATEMENT_KINDS = [
    ("temp table", re.compile(r"^\s*CREATE TEMP TABLE")),
    ("lock members", re.compile(r"FOR UPDATE\) locked")),
    ("refresh window sums", re.compile(r"^\s*UPDATE members_member SET growth_value")),
    ("decide (INSERT tier_decision)", re.compile(r"^\s*INSERT INTO tier_decision")),
    ("count rules", re.compile(r"^\s*SELECT rule, count")),
    ("history (INSERT tierchange)", re.compile(r"^\s*INSERT INTO tiers_tierchange")),
    ("apply (UPDATE members)", re.compile(r"^\s*UPDATE members_member SET\s+tier_id")),
    ("clear tier_decision", re.compile(r"^\s*DELETE FROM tier_decision")),
]


def statement_kind(sql: str) -> str:
    for name, pattern in STATEMENT_KINDS:
        if pattern.search(sql):
            return name
    return "other (" + " ".join(sql.split())[:60] + ")"


class StatementLog:
    """An execute_wrapper that counts and times every statement the job sends (no DEBUG query log), on every
    connection: the job runs its batches on worker threads, each with its own connection, so the wrapper is put on
    each connection as it opens (connection_created) as well as on this thread's."""

    def __init__(self):
        self.records: list[tuple[int, str, float, float]] = []  # thread, kind, start, seconds

    def __call__(self, execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.records.append((threading.get_ident(), statement_kind(sql), started, time.perf_counter() - started))

    def install(self, connection) -> None:
        if self not in connection.execute_wrappers:
            connection.execute_wrappers.append(self)

    def on_connection_created(self, sender, connection, **kwargs) -> None:
        self.install(connection)

    def batches(self) -> tuple[list, list[list]]:
        """(statements before the first batch, [statements of each batch]): a batch starts with its temp table
        statement and runs on one thread, so a thread's statements split at each of those."""
        before, batches, current = [], [], {}
        for record in self.records:
            thread, kind = record[0], record[1]
            if kind == "temp table":
                current[thread] = []
                batches.append(current[thread])
            if thread in current:
                current[thread].append(record)
            else:
                before.append(record)
        return before, batches


def own_peak_rss_mib(reset: bool = False) -> float | None:
    """This process's own resident high-water mark (VmHWM), optionally reset first (Linux: clear_refs 5). Unlike
    ru_maxrss it does not start from the parent's size: Linux carries the parent's high-water mark into ru_maxrss
    across fork and exec, so a child forked by a bigger parent reports the parent's figure until it outgrows it."""
    try:
        if reset:
            with open("/proc/self/clear_refs", "w") as clear_refs:
                clear_refs.write("5")
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def recalc_child(args) -> None:
    """One tiers_recalculate in this (fresh) process; prints its figures as JSON on the last line."""
    import tracemalloc

    from django.db import connection
    from django.db.backends.signals import connection_created

    from tiers.services import tiers_recalculate

    as_of = as_of_moment(args.as_of)
    connection.ensure_connection()
    gc.collect()
    load_at_start = load_average()
    baseline_maxrss, baseline_rss = max_rss_mib(), current_rss_mib()
    own_peak_rss_mib(reset=True)
    statements = StatementLog()
    statements.install(connection)
    connection_created.connect(statements.on_connection_created)
    rss_after_batches: list[float] = []
    kwargs = {} if args.workers is None else {"workers": args.workers}

    def on_batch(progress) -> None:
        rss_after_batches.append(current_rss_mib())

    if args.trace:
        tracemalloc.start()
    started = time.perf_counter()
    result = tiers_recalculate(as_of=as_of, batch_size=args.batch_size, on_batch=on_batch, **kwargs)
    seconds = time.perf_counter() - started
    traced_peak = tracemalloc.get_traced_memory()[1] / 2**20 if args.trace else None
    if args.trace:
        tracemalloc.stop()
    peak_maxrss, own_peak = max_rss_mib(), own_peak_rss_mib()
    connection_created.disconnect(statements.on_connection_created)

    before, batches = statements.batches()
    by_kind: dict[str, list] = {}
    for _thread, kind, _start, spent in statements.records:
        entry = by_kind.setdefault(kind, [0, 0.0])
        entry[0] += 1
        entry[1] += spent
    print(
        json.dumps(
            {
                "batch_size": args.batch_size,
                "workers_requested": args.workers,
                "threads": len({record[0] for batch in batches for record in batch}),
                "load_average_at_start": load_at_start,
                "seconds": seconds,
                "refreshed": result.refreshed,
                "changes": dict(result.changes),
                "rounds": result.rounds,
                "queries": len(statements.records),
                "queries_before_batches": len(before),
                "batches": len(batches),
                "queries_per_batch": dict(Counter(len(batch) for batch in batches)),
                # first statement's start to last statement's end (the commit not included)
                "batch_seconds": [batch[-1][2] + batch[-1][3] - batch[0][2] for batch in batches],
                "statement_seconds": sum(record[3] for record in statements.records),
                "by_kind": by_kind,
                "baseline_maxrss_mib": baseline_maxrss,
                "baseline_rss_mib": baseline_rss,
                "peak_maxrss_mib": peak_maxrss,
                "own_peak_rss_mib": own_peak,
                "rss_after_batches_mib": rss_after_batches,
                "traced_peak_mib": traced_peak,
                "statements": [
                    [kind, round((start - started) * 1000, 1), round(spent * 1000, 2)]
                    for _thread, kind, start, spent in statements.records
                ],
            }
        )
    )


def member_updates() -> tuple[int, int]:
    """members_member's row updates and HOT updates so far (PostgreSQL's cumulative statistics), read until two
    reads agree: the job's connections report theirs as they close."""
    from django.db import connection

    last = None
    for _attempt in range(10):
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_stat_clear_snapshot()")
            cursor.execute(
                "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'members_member'"
            )
            now = cursor.fetchone()
        if now == last:
            break
        last = now
        time.sleep(0.5)
    return last


def recalc_in_child(args, *, batch_size: int, trace: bool) -> dict:
    before = member_updates()
    command = [
        sys.executable, "-m", "bench.tiers", "--recalc-child", "--batch-size", str(batch_size),
        "--as-of", args.as_of.isoformat(),
    ]
    if trace:
        command.append("--trace")
    if args.workers is not None:
        command += ["--workers", str(args.workers)]
    completed = subprocess.run(command, capture_output=True, text=True, env=os.environ.copy(), check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"recalculation child failed ({completed.returncode}):\n{completed.stderr}")
    figures = json.loads(completed.stdout.strip().splitlines()[-1])
    figures["trace"] = trace
    after = member_updates()
    figures["member_updates"], figures["member_hot_updates"] = after[0] - before[0], after[1] - before[1]
    return figures


# --- EXPLAIN ------------------------------------------------------------------------------------------------------

EXPLAINED_KINDS = {name for name, _pattern in STATEMENT_KINDS if name != "temp table"}


def explain_batch(args, batch_size: int, path: str) -> list[list]:
    """Run one batch of the job (the middle one) with every statement first under EXPLAIN (ANALYZE, BUFFERS) inside
    a savepoint that is rolled back, then for real; roll the whole batch back at the end. Writes the plans to
    `path`; returns a summary row per statement."""
    from django.db import connection, transaction
    from django.db.models import Max, Min

    from members.models import Member
    from tiers.evaluation import Ladder, ensure_decision_table, evaluate_range
    from tiers.selectors import tier_ladder, tier_policy

    as_of = as_of_moment(args.as_of)
    bounds = Member.objects.aggregate(lo=Min("id"), hi=Max("id"))
    batches = (bounds["hi"] - bounds["lo"]) // batch_size + 1
    lo = bounds["lo"] + (batches // 2) * batch_size
    hi = min(lo + batch_size, bounds["hi"] + 1)
    plans: list[tuple[str, str]] = []

    def wrapper(execute, sql, params, many, context):
        kind = statement_kind(sql)
        if kind not in EXPLAINED_KINDS or many:
            return execute(sql, params, many, context)
        raw = context["cursor"].cursor
        raw.execute("SAVEPOINT bench_explain")
        raw.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
        plan = "\n".join(row[0] for row in raw.fetchall())
        raw.execute("ROLLBACK TO SAVEPOINT bench_explain")
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            plans.append((kind, plan, (time.perf_counter() - started) * 1000))

    with transaction.atomic():
        ensure_decision_table()
        with connection.execute_wrapper(wrapper):
            evaluate_range(lo=lo, hi=hi, as_of=as_of, policy=tier_policy(), ladder=Ladder(tier_ladder()))
        transaction.set_rollback(True)

    rows = []
    with open(path, "w") as out:
        out.write(f"EXPLAIN (ANALYZE, BUFFERS) of one batch: members {lo}..{hi - 1} ({hi - lo:,}), as of {as_of}\n")
        for number, (kind, plan, real_ms) in enumerate(plans, start=1):
            out.write(f"\n--- {number}. {kind} (the statement itself, run after its EXPLAIN: {real_ms:.1f} ms)\n")
            out.write(f"{plan}\n")
            execution = re.search(r"Execution Time: ([\d.]+) ms", plan)
            planning = re.search(r"Planning Time: ([\d.]+) ms", plan)
            top = re.search(r"actual time=[\d.]+\.\.[\d.]+ rows=(\d+)", plan)
            buffers = re.search(r"Buffers: (.*)", plan)
            jit = re.search(r"JIT:.*?Total ([\d.]+) ms", plan, re.S)
            rows.append(
                [
                    number,
                    kind,
                    f"{float(planning.group(1)):.1f}" if planning else "-",
                    f"{float(execution.group(1)):.1f}" if execution else "-",
                    f"{float(jit.group(1)):.1f}" if jit else "-",
                    f"{real_ms:.1f}",
                    f"{int(top.group(1)):,}" if top else "-",
                    buffers.group(1).strip() if buffers else "-",
                ]
            )
    return rows


# --- Report -------------------------------------------------------------------------------------------------------


def _changes(changes: dict) -> str:
    return ", ".join(f"{rule} {count:,}" for rule, count in sorted(changes.items())) or "none"


def _per_batch(run: dict) -> str:
    return ", ".join(f"{q} x {n}" for q, n in sorted(run["queries_per_batch"].items(), key=lambda x: int(x[0])))


def _batch_seconds(run: dict) -> str:
    values = run["batch_seconds"]
    if not values:
        return "-"
    return f"{min(values):.2f} / {statistics.median(values):.2f} / {max(values):.2f}"


def _rss(run: dict) -> str:
    values = run["rss_after_batches_mib"]
    return f"{min(values):.1f} / {max(values):.1f}" if values else "-"


def run_row(label: str, run: dict, members: int) -> list:
    return [
        label,
        f"{run['batch_size']:,}",
        run["threads"],
        run["batches"],
        f"{run['seconds']:.1f}",
        f"{members / run['seconds']:,.0f}" if run["seconds"] else "-",
        f"{run['refreshed']:,}",
        f"{sum(run['changes'].values()):,}",
        run["rounds"],
        f"{run['queries']:,}",
        run["queries_before_batches"],
        _per_batch(run),
        _batch_seconds(run),
        f"{run['baseline_rss_mib']:.1f}",
        "-" if run.get("own_peak_rss_mib") is None else f"{run['own_peak_rss_mib']:.1f}",
        f"{run['baseline_maxrss_mib']:.1f} / {run['peak_maxrss_mib']:.1f}",
        _rss(run),
        "-" if run["traced_peak_mib"] is None else f"{run['traced_peak_mib']:.2f}",
        _hot(run),
        run["load_average_at_start"].split(" / ")[0],
    ]


def _hot(run: dict) -> str:
    updates = run.get("member_updates")
    if not updates:
        return "0" if updates == 0 else "-"
    return f"{updates:,} ({run['member_hot_updates'] / updates * 100:.0f} % HOT)"


RUN_HEADERS = [
    "run", "batch", "worker threads", "batches", "wall s", "members/s", "sums refreshed", "changes", "rounds",
    "queries", "before batches", "queries per batch (q x batches)", "batch s min/med/max", "RSS after setup MiB",
    "own peak RSS MiB (VmHWM)", "ru_maxrss before / after MiB", "RSS after batches min/max MiB",
    "tracemalloc peak MiB", "member row updates", "load avg at start",
]


def report(args, machine, shape, load, first, second, sweep, explain_rows, started) -> str:
    members, events = shape["members"], shape["events"]
    parts = [
        (
            f"bench.tiers · members={members:,} events={events:,} as-of={args.as_of} (end of day, site time zone) "
            f"batch-size={first['batch_size']:,} workers={args.workers or 'default'} "
            f"sweep={','.join(str(s) for s in args.sweep_sizes) or 'none'}"
        ),
        "",
        table(["machine", ""], [[k, v] for k, v in machine.items()]),
        "",
    ]
    if load:
        parts += [
            table(
                ["load step", "s"],
                [[k, f"{v:.1f}"] for k, v in load.items()] + [["total", f"{sum(load.values()):.1f}"]],
            ),
            "",
        ]
    parts += [
        table(
            ["growth events by source", "events", f"in the window (after {shape['window_start'][:19]})"],
            [[s, f"{n:,}", f"{w:,}"] for s, n, w in shape["sources"]]
            + [["all", f"{events:,}", f"{sum(w for _s, _n, w in shape['sources']):,}"]],
        ),
        "",
        table(
            ["members by tier (loaded)", "members", "validity ended", "overridden", "override ended"],
            [[code, f"{n:,}", f"{exp:,}", f"{o:,}", f"{oe:,}"] for code, n, exp, o, oe in shape["tiers"]],
        ),
        "",
        (
            f"Members joined {shape['joined'][0][:10]} .. {shape['joined'][1][:10]}, "
            f"{shape['members_without_orders']:,} "
            f"without an order; events {shape['occurred'][0][:10]} .. {shape['occurred'][1][:10]}. Sizes: members "
            f"{shape['members_mib']:,.0f} MiB, growth events {shape['events_mib']:,.0f} MiB with indexes (heap "
            f"{shape['events_heap_mib']:,.0f} MiB, growth_member_occurred_idx "
            f"{shape['events_member_occurred_idx_mib']:,.0f} MiB)."
        ),
        "",
        table(RUN_HEADERS, [run_row("1st run", first, members), run_row("2nd run, same as-of", second, members)]
              + [run_row(f"sweep{' (tracemalloc)' if r['trace'] else ''}", r, members) for r in sweep]),
        "",
        table(["changes by rule", "1st run", "2nd run"],
              [[rule, f"{first['changes'].get(rule, 0):,}", f"{second['changes'].get(rule, 0):,}"]
               for rule in sorted(set(first["changes"]) | set(second["changes"]))]
              or [["(none)", "0", "0"]]),
        "",
        table(
            ["1st run: statement", "count", "total s", "ms each", "share of statement time"],
            [[kind, f"{n:,}", f"{s:.2f}", f"{s / n * 1000:.1f}", f"{s / first['statement_seconds'] * 100:.1f} %"]
             for kind, (n, s) in sorted(first["by_kind"].items(), key=lambda x: -x[1][1])],
        ),
        "",
        (
            f"1st run: statements took {first['statement_seconds']:.1f} s summed over its {first['threads']} worker "
            f"connection(s), for {first['seconds']:.1f} s of wall time."
        ),
    ]
    if explain_rows:
        parts += [
            "",
            table(["#", "EXPLAIN (ANALYZE, BUFFERS), one batch", "planning ms", "execution ms", "of which JIT ms",
                   "statement itself ms", "top rows", "buffers (top node)"], explain_rows),
        ]
    within = first["seconds"] < 120
    own_peak = first.get("own_peak_rss_mib")
    traced = ", ".join(f"{r['traced_peak_mib']:.2f}" for r in sweep if r["traced_peak_mib"] is not None)
    per_batch_all = {q for run in (first, second, *sweep) for q in run["queries_per_batch"]}
    parts += [
        "",
        "Summary",
        "",
        f"- recalculate_tiers, 1st run: {first['seconds']:.1f} s for {members:,} members and {events:,} events "
        f"({'under' if within else 'OVER'} the 120 s target); window sums refreshed for {first['refreshed']:,} "
        f"members; "
        f"changes: {_changes(first['changes'])}.",
        f"- 2nd run, same as-of: {second['seconds']:.1f} s, {second['refreshed']:,} refreshed, changes: "
        f"{_changes(second['changes'])}" + ("" if not second["changes"] and not second["refreshed"]
                                            else " (EXPECTED NONE: not idempotent)") + ".",
        f"- Memory: job process RSS {first['baseline_rss_mib']:.1f} MiB after setup, its own peak during the run "
        + ("n/a" if own_peak is None else f"{own_peak:.1f} MiB (+{own_peak - first['baseline_rss_mib']:.1f})")
        + f"; ru_maxrss {first['baseline_maxrss_mib']:.1f} -> {first['peak_maxrss_mib']:.1f} MiB; RSS after each "
        f"batch {_rss(first)} MiB; member row versions written {_hot(first)}"
        + (f"; tracemalloc peak {traced} MiB over the sweep" if traced else "")
        + ".",
        f"- Queries: 1st run {first['queries']:,} = {first['queries_before_batches']} before the batches + per batch "
        f"{_per_batch(first)}; statement counts per batch seen in all runs: {sorted(int(q) for q in per_batch_all)}.",
        f"- Total benchmark time {(time.perf_counter() - started) / 60:.1f} min; load average at end {load_average()}.",
    ]
    return "\n".join(parts)


def main(argv=None) -> int:
    args = parse_args(argv)
    django_setup()
    if args.batch_size is None:
        args.batch_size = default_batch_size()
    if args.recalc_child:
        recalc_child(args)
        return 0
    started = time.perf_counter()
    as_of = as_of_moment(args.as_of)
    load = {}
    try:
        if args.skip_load:
            from django.conf import settings

            if "bench" not in settings.DATABASES["default"]["NAME"]:
                raise BenchRefused("--skip-load works only on a benchmark database (its name has 'bench')")
            meta = meta_load()
            if not meta:
                raise BenchRefused("nothing loaded here yet: run once without --skip-load (with --reset)")
            if meta["as_of"] != args.as_of.isoformat():
                raise BenchRefused(f"the data was laid out for as-of {meta['as_of']}: pass --as-of {meta['as_of']}")
            log("restoring the loaded state")
            log(f"restored in {state_restore():.1f} s")
        else:
            started_prepare = time.perf_counter()
            name = bench_database_prepare(reset=args.reset)
            load["create database and migrate"] = time.perf_counter() - started_prepare
            log(f"database {name!r} ready")
            load.update(data_load(args))
            meta_save({"as_of": args.as_of.isoformat(), "members": args.members, "events": args.events,
                       "load_seconds": load})
            log(f"loaded in {sum(load.values()):.1f} s")
    except BenchRefused as refused:
        print(f"bench.tiers: {refused.message}", file=sys.stderr)
        return 2
    machine = machine_description()
    machine["code"] = code_version()
    shape = data_shape(as_of)
    shape["members"], shape["events"] = _counts()

    log(f"1st run, batch size {args.batch_size:,} (child process)")
    first = recalc_in_child(args, batch_size=args.batch_size, trace=False)
    log(f"1st run: {first['seconds']:.1f} s, changes {_changes(first['changes'])}")
    log("2nd run, same as-of (child process)")
    second = recalc_in_child(args, batch_size=args.batch_size, trace=False)
    log(f"2nd run: {second['seconds']:.1f} s, changes {_changes(second['changes'])}")

    sweep = []
    for size in args.sweep_sizes:
        log("sweep: restoring the loaded state")
        log(f"restored in {state_restore():.1f} s")
        log(f"sweep: batch size {size:,} (child process, tracemalloc)")
        run = recalc_in_child(args, batch_size=size, trace=True)
        log(f"sweep: batch size {size:,}: {run['seconds']:.1f} s")
        sweep.append(run)

    explain_rows = []
    if args.explain:
        log("explain: restoring the loaded state")
        log(f"restored in {state_restore():.1f} s")
        explain_rows = explain_batch(args, args.batch_size, args.explain)
        log(f"explain: plans written to {args.explain}")

    print(report(args, machine, shape, load, first, second, sweep, explain_rows, started))
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"args": {k: str(v) for k, v in vars(args).items()}, "machine": machine, "shape": shape,
                       "load": load, "first": first, "second": second, "sweep": sweep, "explain": explain_rows},
                      out, indent=1, default=str)
    return 0


def _counts() -> tuple[int, int]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT (SELECT count(*) FROM members_member), (SELECT count(*) FROM tiers_growthevent)")
        return cursor.fetchone()


if __name__ == "__main__":
    sys.exit(main())
