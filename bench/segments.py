"""Segment benchmark: RFM refresh and segment counts over a million members on PostgreSQL.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/loyalty_bench_segments .venv/bin/python -m bench.segments --reset \
        [--members 1000000] [--repeats 5] [--as-of 2026-11-22] [--json PATH] [--plans PATH] [--skip-load]

What it does (figures printed as Markdown tables on stdout, progress on stderr):

1. Load, set-based (generate_series, INSERT ... SELECT; no ORM row): `--members` members who joined over the three
   years before as-of; 82 % have ordered: orders per member geometric (half of the buyers once), the last order
   exponential back from as-of (mean 120 days, never before joining), spend = orders x a log-normal basket; tiers a
   pyramid by spend (member, silver, gold, diamond: about 60 / 28 / 10 / 2 %); 10 regions with a skew and 4 %
   blank; 75 % with a birthday; email consent 45 %, SMS 30 %; five tags on 20 %, 3 %, 1.5 %, 0.5 % and 0.2 % of
   members. The member table's secondary indexes are dropped during the load and recreated exactly as migrated
   (checked), then VACUUM (ANALYZE) and CHECKPOINT.
2. `rfm_refresh(now=as-of)` timed three times: the first scoring (every row written), the same as-of again (nothing
   changes), and one day later (the nightly case: statuses and scores that moved). The first one rewrites most
   rows and so ends with its own VACUUM (ANALYZE) (members.rfm); right after it every segment below is counted
   once ("after 1st scoring"); after the third, VACUUM (ANALYZE) members_member, as autovacuum would.
3. `segment_count(filters, now=as-of)` (what the admin's live count and the saved count run) for a set of realistic
   segment definitions, single filters and combinations, each `--repeats` times: p50 and max wall time, the count,
   and a summary of EXPLAIN (ANALYZE, BUFFERS) (scan nodes and the indexes they use). Full plans go to `--plans`.
   The issue's target: every count under 2 s.

`--skip-load` reruns 2-3 on the loaded database. It needs a PostgreSQL database of its own: it creates it when
missing, refuses one that already has members unless --reset (which drops and recreates it, and only a database
whose name contains "bench"), and migrates. Not part of the test suite.
"""
import argparse
import json
import re
import statistics
import sys
import time
from datetime import date, datetime, timedelta

from bench.common import (
    BenchRefused,
    bench_database_prepare,
    django_setup,
    load_average,
    log,
    machine_description,
    schema_restore,
    schema_strip,
    table,
)

DEFAULT_AS_OF = date(2026, 11, 22)
TARGET_SECONDS = 2.0
LOADED_TABLES = ("members_member", "members_member_tags")
TAGS = [  # name, colour, share of members
    ("newsletter-club", "#2563eb", 0.20),
    ("VIP", "#b45309", 0.03),
    ("wholesale", "#059669", 0.015),
    ("influencer", "#db2777", 0.005),
    ("staff", "#6b7280", 0.002),
]
REGIONS = ["Guangdong", "Shanghai", "Beijing", "Zhejiang", "Jiangsu", "Sichuan", "Hubei", "Fujian", "Shandong",
           "Henan"]

HELPERS_SQL = """
CREATE OR REPLACE FUNCTION bench_u(x bigint, seed bigint) RETURNS float8 LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT (hashint8extended(x, seed) & 281474976710655)::float8 / 281474976710656.0 $$;
"""
HELPERS_DROP_SQL = "DROP FUNCTION IF EXISTS bench_u(bigint, bigint);"

# Member i. Buyers (82 %): orders 1 + floor(ln(u) / ln(0.5)) capped at 60 (half once, a quarter twice...); the last
# order exponential back from as-of with a 120-day mean, clipped to the join date; basket log-normal (median 180,
# sigma 0.8), spend = orders x basket. Tier by spend, a pyramid of about 60 / 28 / 10 / 2 %: diamond 2,250+,
# gold 850+, silver 300+, member below.
MEMBERS_SQL = """
INSERT INTO members_member (
    id, external_id, email, phone, name, region, birthday, joined_at, email_opt_in, sms_opt_in, referral_code,
    tier_id, growth_value, window_spend, window_orders, points_balance, points_pending, points_debt,
    lifetime_spend, order_count, first_order_at, last_order_at, created_at, updated_at, blocked_reason, is_blocked
)
SELECT %(first)s + i, 'bs-' || i, 'member' || i || '@bench.example', '+8613' || lpad(i::text, 9, '0'),
       'Bench member ' || i,
       CASE WHEN bench_u(i, 1) < 0.04 THEN ''
            ELSE (%(regions)s::text[])[1 + floor(10 * power(bench_u(i, 2), 1.6))::int] END,
       CASE WHEN bench_u(i, 3) < 0.75
            THEN DATE '1960-01-01' + floor(bench_u(i, 4) * 16800)::int END,
       j.joined_at, bench_u(i, 5) < 0.45, bench_u(i, 6) < 0.30, 'BS' || lpad(i::text, 10, '0'),
       CASE WHEN p.spend >= 2250 THEN %(diamond)s WHEN p.spend >= 850 THEN %(gold)s
            WHEN p.spend >= 300 THEN %(silver)s ELSE %(member)s END,
       0, 0, 0, 0, 0, 0,
       p.spend, p.orders,
       CASE WHEN p.orders > 0 THEN greatest(j.joined_at, p.last_at - make_interval(days => p.orders * 20)) END,
       CASE WHEN p.orders > 0 THEN p.last_at END,
       j.joined_at, j.joined_at, '', false
FROM generate_series(0, %(members)s - 1) AS i
CROSS JOIN LATERAL (
    SELECT %(as_of)s::timestamptz - make_interval(secs => bench_u(i, 7) * 1095 * 86400) AS joined_at
) AS j
CROSS JOIN LATERAL (
    SELECT CASE WHEN bench_u(i, 8) < 0.18 THEN 0
                ELSE least(60, 1 + floor(ln(greatest(bench_u(i, 9), 1e-12)) / ln(0.5)))::int END AS orders
) AS o
CROSS JOIN LATERAL (
    SELECT o.orders,
           round((o.orders * 180 * exp(0.8 * sqrt(-2 * ln(greatest(bench_u(i, 10), 1e-12)))
                                       * cos(2 * pi() * bench_u(i, 11))))::numeric, 2) AS spend,
           greatest(j.joined_at,
                    %(as_of)s::timestamptz - make_interval(secs => -ln(greatest(bench_u(i, 12), 1e-12)) * 120 * 86400))
               AS last_at
) AS p
ORDER BY i
"""

TAGS_SQL = """
INSERT INTO members_member_tags (member_id, tag_id)
SELECT %(first)s + i, %(tag_id)s FROM generate_series(0, %(members)s - 1) AS i
WHERE bench_u(i, %(seed)s) < %(share)s
"""


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.segments", description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=1_000_000, help="Members to load (default 1,000,000).")
    parser.add_argument("--repeats", type=int, default=5, help="Runs of each segment count (default 5).")
    parser.add_argument("--as-of", type=date.fromisoformat, default=DEFAULT_AS_OF,
                        help=f"The data is laid out back from the end of this day (default {DEFAULT_AS_OF}).")
    parser.add_argument("--json", metavar="PATH", help="Also write every figure as JSON into PATH.")
    parser.add_argument("--plans", metavar="PATH", help="Write the full EXPLAIN (ANALYZE, BUFFERS) plans into PATH.")
    parser.add_argument("--skip-load", action="store_true", help="Reuse the loaded database.")
    parser.add_argument("--reset", action="store_true", help="Drop and recreate the benchmark database first.")
    args = parser.parse_args(argv)
    if args.members < 1 or args.repeats < 1:
        parser.error("--members and --repeats must be positive")
    if args.skip_load and args.reset:
        parser.error("--skip-load and --reset exclude each other")
    return args


def as_of_moment(day: date) -> datetime:
    from tiers.management.commands.recalculate_tiers import end_of_day

    return end_of_day(day)


# --- Load -----------------------------------------------------------------------------------------------------------


def data_load(args) -> dict:
    from django.db import connection

    from members.models import Tag
    from tiers.models import Tier

    as_of = as_of_moment(args.as_of)
    tiers = dict(Tier.objects.values_list("code", "pk"))
    timings = {}
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM members_member")
        if cursor.fetchone()[0]:
            raise BenchRefused("the database already has members: load into a fresh one (--reset)")
        cursor.execute("SET work_mem = '512MB'")
        cursor.execute("SET maintenance_work_mem = '1GB'")
        cursor.execute(HELPERS_SQL)
        saved = schema_strip(cursor, LOADED_TABLES)
        cursor.execute("SELECT nextval(pg_get_serial_sequence('members_member', 'id'))")
        first = cursor.fetchone()[0]

        log(f"load: {args.members:,} members")
        started = time.perf_counter()
        cursor.execute(
            MEMBERS_SQL,
            {"first": first, "members": args.members, "as_of": as_of, "regions": REGIONS,
             "member": tiers["member"], "silver": tiers["silver"], "gold": tiers["gold"], "diamond": tiers["diamond"]},
        )
        cursor.execute("SELECT setval(pg_get_serial_sequence('members_member', 'id'), %s)", [first + args.members - 1])
        timings["members"] = time.perf_counter() - started

        started = time.perf_counter()
        for seed, (name, colour, share) in enumerate(TAGS, start=40):
            tag = Tag.objects.create(name=name, color=colour)
            cursor.execute(TAGS_SQL, {"first": first, "members": args.members, "tag_id": tag.pk, "seed": seed,
                                      "share": share})
        timings["member tags"] = time.perf_counter() - started

        started = time.perf_counter()
        schema_restore(cursor, saved)
        timings["indexes and constraints"] = time.perf_counter() - started

        log("load: VACUUM (ANALYZE)")
        started = time.perf_counter()
        for name in LOADED_TABLES:
            cursor.execute(f"VACUUM (ANALYZE) {name}")
        cursor.execute("CHECKPOINT")
        timings["VACUUM (ANALYZE), CHECKPOINT"] = time.perf_counter() - started
        cursor.execute(HELPERS_DROP_SQL)
        cursor.execute("RESET work_mem")
        cursor.execute("RESET maintenance_work_mem")
    return timings


def data_shape() -> dict:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT count(*), count(last_order_at), count(birthday), count(*) FILTER (WHERE email_opt_in),
                      count(*) FILTER (WHERE sms_opt_in), count(*) FILTER (WHERE region = ''),
                      percentile_disc(0.5) WITHIN GROUP (ORDER BY order_count) FILTER (WHERE order_count > 0),
                      percentile_disc(0.5) WITHIN GROUP (ORDER BY lifetime_spend) FILTER (WHERE order_count > 0)
               FROM members_member"""
        )
        members, buyers, birthdays, email, sms, no_region, median_orders, median_spend = cursor.fetchone()
        cursor.execute(
            """SELECT t.code, count(m.id) FROM members_member m JOIN tiers_tier t ON t.id = m.tier_id
               GROUP BY t.code, t.rank ORDER BY t.rank"""
        )
        tiers = cursor.fetchall()
        cursor.execute("SELECT count(*) FROM members_member_tags")
        tag_rows = cursor.fetchone()[0]
        cursor.execute(
            "SELECT pg_relation_size('members_member'), pg_total_relation_size('members_member'), "
            "pg_total_relation_size('members_member_tags')"
        )
        heap, total, tags_total = cursor.fetchone()
    return {
        "members": members, "buyers": buyers, "with birthday": birthdays, "email consent": email,
        "SMS consent": sms, "no region": no_region, "median orders (buyers)": median_orders,
        "median spend (buyers)": str(median_spend), "tiers": dict(tiers),
        "member-tag rows": tag_rows, "members_member heap MiB": round(heap / 2**20),
        "members_member with indexes MiB": round(total / 2**20),
        "members_member_tags MiB": round(tags_total / 2**20),
    }


# --- Measured runs ----------------------------------------------------------------------------------------------------


def refresh_runs(as_of: datetime) -> tuple[list[dict], dict[str, float]]:
    """The three refreshes, and the segment counts once right after the first (milliseconds by segment label)."""
    from django.db import connection

    from campaigns.selectors import segment_count
    from members.rfm import rfm_refresh

    runs = []
    after_first = {}
    for label, now in (
        ("first scoring (every member written)", as_of),
        ("same as-of again (nothing changes)", as_of),
        ("one day later (the nightly run)", as_of + timedelta(days=1)),
    ):
        log(f"rfm_refresh: {label}")
        started = time.perf_counter()
        result = rfm_refresh(now=now)
        seconds = time.perf_counter() - started
        runs.append({"run": label, "seconds": seconds, "members": result.members, "scored": result.scored,
                     "updated": result.updated})
        log(f"rfm_refresh: {seconds:.1f} s, {result.updated:,} updated")
        if not after_first:
            log("segment counts right after the first scoring")
            for segment, filters in segment_definitions():
                started = time.perf_counter()
                segment_count(filters, now=as_of)
                after_first[segment] = (time.perf_counter() - started) * 1000
    log("VACUUM (ANALYZE) members_member")
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM (ANALYZE) members_member")
    runs.append({"run": "VACUUM (ANALYZE) after the refreshes", "seconds": time.perf_counter() - started,
                 "members": None, "scored": None, "updated": None})
    return runs, after_first


def segment_definitions() -> list[tuple[str, dict]]:
    from members.models import Tag

    tags = dict(Tag.objects.values_list("name", "pk"))
    return [
        ("all members (no filter)", {}),
        ("tier gold", {"tiers": ["gold"]}),
        ("RFM segment champions", {"rfm_segments": ["champions"]}),
        ("activity dormant", {"activity_statuses": ["dormant"]}),
        ("RFM at risk or can't lose", {"rfm_segments": ["at_risk", "cant_lose"]}),
        ("30-90 days since last order", {"days_since_last_order_min": 30, "days_since_last_order_max": 90}),
        ("ordered in the last 7 days", {"days_since_last_order_max": 7}),
        ("5+ orders", {"order_count_min": 5}),
        ("spend 5,000+", {"lifetime_spend_min": "5000"}),
        ("region Shanghai or Beijing", {"regions": ["Shanghai", "Beijing"]}),
        ("birthday in March", {"birthday_months": [3]}),
        ("tag VIP or influencer", {"tags": [tags["VIP"], tags["influencer"]]}),
        ("tag newsletter-club (20 %)", {"tags": [tags["newsletter-club"]]}),
        ("joined in the last 90 days", {"joined_from": "2026-08-25"}),
        ("email consent", {"email_opt_in": True}),
        ("win-back: dormant or churn risk, gold+diamond, email", {
            "activity_statuses": ["dormant", "churn_risk"], "tiers": ["gold", "diamond"], "email_opt_in": True}),
        ("birthday campaign: March, silver+, SMS", {
            "birthday_months": [3], "tiers": ["silver", "gold", "diamond"], "sms_opt_in": True}),
        ("champions in Shanghai with SMS", {
            "rfm_segments": ["champions"], "regions": ["Shanghai"], "sms_opt_in": True}),
        ("top spenders active this month", {
            "lifetime_spend_min": "5000", "order_count_min": 5, "days_since_last_order_max": 30}),
        ("onboarding: joined 90 days, no purchase", {
            "joined_from": "2026-08-25", "activity_statuses": ["no_purchase"]}),
        ("VIP tag, spend 1,000-20,000, 2-20 orders", {
            "tags": [tags["VIP"]], "lifetime_spend_min": "1000", "lifetime_spend_max": "20000",
            "order_count_min": 2, "order_count_max": 20}),
        ("everything: tags, ranges, days, regions, months, consents", {
            "tags": [tags["VIP"], tags["newsletter-club"]], "lifetime_spend_min": "500", "order_count_min": 2,
            "days_since_last_order_min": 10, "days_since_last_order_max": 200, "regions": ["Guangdong", "Shanghai"],
            "birthday_months": [1, 2, 3, 4, 5, 6], "email_opt_in": True, "joined_to": "2026-06-30"}),
    ]


SCAN = re.compile(r"(Parallel )?(Index Only Scan|Index Scan|Bitmap Index Scan|Seq Scan)( Backward)?"
                  r"( using (\w+))?( on (\w+))?")


def plan_summary(plan_text: str) -> str:
    """The scan nodes of a plan, by index (or table) with a count, and whether it ran in parallel."""
    nodes = []
    for line in plan_text.splitlines():
        match = SCAN.search(line)
        if not match:
            continue
        parallel, kind, _backward, _using, index, _on, relation = match.groups()
        what = index or relation or ""
        nodes.append(f"{'parallel ' if parallel else ''}{kind.lower()} {what}".strip())
    seen = {}
    for node in nodes:
        seen[node] = seen.get(node, 0) + 1
    return "; ".join(f"{node}" + (f" x{n}" if n > 1 else "") for node, n in seen.items())


def explain(queryset) -> tuple[str, float]:
    from django.db import connection

    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) SELECT COUNT(*) FROM ({sql}) q", params)
        text = "\n".join(row[0] for row in cursor.fetchall())
    match = re.search(r"Execution Time: ([\d.]+) ms", text)
    return text, float(match.group(1)) if match else 0.0


def count_runs(as_of: datetime, repeats: int) -> list[dict]:
    from campaigns.selectors import segment_count, segment_members

    rows = []
    for label, filters in segment_definitions():
        times = []
        count = None
        for _ in range(repeats):
            started = time.perf_counter()
            count = segment_count(filters, now=as_of)
            times.append(time.perf_counter() - started)
        plan, exec_ms = explain(segment_members(filters, now=as_of).values("pk"))
        rows.append({"segment": label, "filters": filters, "count": count, "p50_ms": statistics.median(times) * 1000,
                     "max_ms": max(times) * 1000, "explain_ms": exec_ms, "plan": plan_summary(plan),
                     "plan_text": plan})
        log(f"{label}: {count:,} members, p50 {statistics.median(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms")
    return rows


def main(argv=None) -> int:
    args = parse_args(argv)
    django_setup()
    started = time.perf_counter()
    as_of = as_of_moment(args.as_of)
    load = {}
    try:
        if args.skip_load:
            from django.conf import settings
            from django.db import connection

            if "bench" not in settings.DATABASES["default"]["NAME"]:
                raise BenchRefused("--skip-load works only on a benchmark database (its name has 'bench')")
            with connection.cursor() as cursor:
                cursor.execute("SELECT count(*) FROM members_member")
                if not cursor.fetchone()[0]:
                    raise BenchRefused("nothing loaded here yet: run once without --skip-load (with --reset)")
        else:
            started_prepare = time.perf_counter()
            name = bench_database_prepare(reset=args.reset)
            load["create database and migrate"] = time.perf_counter() - started_prepare
            log(f"database {name!r} ready")
            load.update(data_load(args))
            log(f"loaded in {sum(load.values()):.1f} s")
    except BenchRefused as refused:
        print(f"bench.segments: {refused.message}", file=sys.stderr)
        return 2
    machine = machine_description()
    shape = data_shape()
    refreshes, after_first = refresh_runs(as_of)
    counts = count_runs(as_of, args.repeats)
    for row in counts:
        row["after_first_ms"] = after_first.get(row["segment"])
    machine["load average at end"] = load_average()

    print(table(["machine", ""], [[k, v] for k, v in machine.items()], title="## Machine"))
    print()
    if load:
        print(table(["load step", "s"], [[k, f"{v:.1f}"] for k, v in load.items()], title="## Load"))
        print()
    print(table(["data", ""], [[k, json.dumps(v) if isinstance(v, dict) else f"{v:,}" if isinstance(v, int) else v]
                               for k, v in shape.items()], title="## Data"))
    print()
    print(table(
        ["rfm_refresh", "s", "members", "scored", "updated"],
        [[r["run"], f"{r['seconds']:.1f}", *(f"{r[k]:,}" if r[k] is not None else "-"
                                             for k in ("members", "scored", "updated"))] for r in refreshes],
        title=f"## RFM refresh (as of {args.as_of})",
    ))
    print()
    print(table(
        ["segment", "members", "p50 ms", "max ms", "EXPLAIN ANALYZE ms", "after 1st scoring ms", "plan (scans)"],
        [[r["segment"], f"{r['count']:,}", f"{r['p50_ms']:.0f}", f"{r['max_ms']:.0f}", f"{r['explain_ms']:.0f}",
          f"{r['after_first_ms']:.0f}", r["plan"]] for r in counts],
        title=f"## segment_count, {args.repeats} runs each",
    ))
    print()
    worst = max(counts, key=lambda r: max(r["max_ms"], r["after_first_ms"]))
    worst_ms = max(worst["max_ms"], worst["after_first_ms"])
    verdict = "met" if worst_ms < TARGET_SECONDS * 1000 else "NOT met"
    print(f"Target: every segment count under {TARGET_SECONDS:.0f} s on {shape['members']:,} members: {verdict} "
          f"(slowest: {worst['segment']}, {worst_ms:.0f} ms). Whole run {time.perf_counter() - started:.0f} s.")
    if args.plans:
        with open(args.plans, "w") as out:
            for r in counts:
                out.write(f"-- {r['segment']}: {json.dumps(r['filters'])}\n{r['plan_text']}\n\n")
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"machine": machine, "load": load, "shape": shape, "refreshes": refreshes,
                       "counts": [{k: v for k, v in r.items() if k != "plan_text"} for r in counts]}, out, indent=2,
                      default=str)
    return 0 if verdict == "met" else 1


if __name__ == "__main__":
    sys.exit(main())
