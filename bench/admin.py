"""Operator console benchmark: the admin changelists of the big tables, their filters, sorts and searches.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/loyalty_bench_admin .venv/bin/python -m bench.admin \
        [--members 1000000] [--orders 10000000] [--ledger 10000000] [--redemptions 1000000] [--reps 20] \
        [--reset | --skip-load] [--only REGEX] [--explain]

The issue's target: the changelists of members (1M), orders (10M) and points transactions (10M) render in under
300 ms (p95) on PostgreSQL. What it does (figures as Markdown tables on stdout, progress on stderr):

1. Load, set-based (INSERT ... SELECT FROM generate_series in chunks of about a million rows, with the tables'
   secondary indexes and unique/foreign-key constraints dropped during the load and recreated after it, as
   bench.common.schema_strip/schema_restore do), then VACUUM (ANALYZE):
   - members spread over the migrated tier ladder (70 / 20 / 8 / 2 %), names from 200 x 200 Latin first and last
     names plus about 10 % Chinese names, unique emails, phones, external ids `cust-<i>`, 20 regions, joined over
     five years (a lower id joined earlier), consents, a few % blocked or tier-overridden, RFM segments and scores,
     tags on about 20 %. Purchase aggregates (order count, spend, first and last order, activity status) are computed
     from the loaded orders and points_balance from the unexpired credit lots of the loaded ledger.
   - orders `ord-<i>`: the first 80 % of members buy (skewed: the oldest members have thousands of orders, the
     newest 20 % none), placed after the member joined and within three years, log-normal amounts 5-2,000, CNY with
     some USD and rare HKD, five channels (one rare), ten categories, 94 % paid, 3 % partially refunded, 2 %
     refunded, 1 % cancelled.
   - the points ledger: `--ledger` rows, kinds by fixed shares (70 % earn ... 0.5 % redeem_cancel), credits with
     remaining 0..amount (0 once expired) and an expiry 24 months on, debits negative with nothing remaining,
     idempotency keys `bench-<i>`, order references `ord-<k>` for earn and clawback, adjustments by a staff user.
     The ledger is append-only (a trigger refuses UPDATE/DELETE): it is only inserted into. The invariants of
     `check_ledger` (debits' allocations, balances equal to the sum of amounts) are NOT built: this bench reads.
   - rewards (5) and `--redemptions` redemptions, each on one of the ledger's redeem debits (at most as many as the
     ledger holds: 10 % of it).
2. Measure in process with django.test.Client, logged in as a superuser (`bench-admin`), DEBUG off: per scenario
   2 warm-up requests then `--reps` timed ones (p50, p95, max), the SQL statements of one more, untimed request
   (CaptureQueriesContext: their number and the slowest one's time), the HTTP status and the changelist's row count.
   Scenarios for MemberAdmin, OrderAdmin, PointsTransactionAdmin and RedemptionAdmin: first page, page 50, every
   `list_filter` (built at runtime from the admin's filter specs: common and rare values from pg_stats), every
   sortable column both ways (from `get_sortable_by` and the columns' ordering), searches, one filter + search +
   sort; then (not in the target) the member and order change pages and the admin index.
   `--explain` prints EXPLAIN (ANALYZE, BUFFERS) of the slowest statement of every scenario that missed, on stderr.

It needs a PostgreSQL database of its own (bench.common.bench_database_prepare): it refuses one that already has
members unless --reset (or --skip-load, which measures what is there). Not part of the test suite.
"""

import argparse
import sys
import time

from bench.admin_load import load
from bench.admin_measure import TARGET_MS, Result, measure
from bench.common import (
    BenchRefused,
    bench_database_prepare,
    django_setup,
    load_average,
    log,
    machine_description,
    table,
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.admin", description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=1_000_000, help="Members to load (default 1,000,000).")
    parser.add_argument("--orders", type=int, default=10_000_000, help="Orders to load (default 10,000,000).")
    parser.add_argument("--ledger", type=int, default=10_000_000, help="Ledger rows to load (default 10,000,000).")
    parser.add_argument(
        "--redemptions", type=int, default=1_000_000, help="Redemptions (default 1,000,000; at most ledger/10)."
    )
    parser.add_argument("--reps", type=int, default=20, help="Timed requests per scenario (default 20).")
    parser.add_argument(
        "--budget", type=float, default=20.0,
        help="Seconds of timed requests per scenario after which it stops early (default 20; the reps column says).",
    )
    parser.add_argument("--only", metavar="REGEX", help="Only the scenarios whose 'admin: scenario' label matches.")
    parser.add_argument("--explain", action="store_true",
                        help="EXPLAIN (ANALYZE, BUFFERS) of the slowest statement of every missed scenario (stderr).")
    parser.add_argument("--reset", action="store_true", help="Drop and recreate the benchmark database first.")
    parser.add_argument("--skip-load", action="store_true", help="Measure the already loaded database.")
    args = parser.parse_args(argv)
    if args.reset and args.skip_load:
        parser.error("--reset and --skip-load exclude each other")
    if min(args.members, args.orders, args.ledger) < 1000:
        parser.error("--members, --orders and --ledger must be at least 1,000")
    return args

def _ms(value: float | None) -> str:
    return "-" if value is None or value != value else f"{value:.0f}"


def report(args, machine, timings, results, started) -> str:
    headers = ["admin", "scenario", "status", "rows", "reps", "p50 ms", "p95 ms", "max ms", "queries",
               "slowest SQL ms", "p95 < 300 ms"]

    def row(r: Result, target: bool):
        return [r.scenario.admin, r.scenario.name.replace("|", "/"), r.status, r.rows, len(r.latencies),
                _ms(r.pct(50)), _ms(r.pct(95)), _ms(max(r.latencies) * 1000 if r.latencies else None),
                "-" if r.queries is None else r.queries, _ms(r.slowest_sql_ms),
                r.verdict if target else ("error" if r.verdict == "error" else "-")]

    in_target = [r for r in results if r.scenario.target]
    info = [r for r in results if not r.scenario.target]
    counts = _counts()
    parts = [
        f"bench.admin · members={counts['members']:,} orders={counts['orders']:,} ledger={counts['ledger']:,} "
        f"redemptions={counts['redemptions']:,} reps={args.reps}",
        "",
        table(["machine", ""], [[k, v] for k, v in machine.items()]),
        "",
    ]
    if timings:
        parts += [table(["load step", "seconds"], timings), ""]
    met = sum(1 for r in in_target if r.verdict == "met")
    missed = [r for r in in_target if r.verdict != "met"]
    if in_target:
        parts += [
            table(headers, [row(r, True) for r in in_target],
                  title=f"Changelists (target: p95 under {TARGET_MS:.0f} ms): {met} of {len(in_target)} met"),
            "",
        ]
    if info:
        parts += [
            table(headers[:-1], [row(r, False)[:-1] for r in info],
                  title="Change pages and the index (not in the 300 ms target, for information)"),
            "",
        ]
    errors = [r for r in results if r.error]
    if errors:
        parts += ["Errors:", *[f"- {r.scenario.admin}: {r.scenario.name}: {r.error}" for r in errors], ""]
    if missed:
        hint = " (EXPLAIN on stderr)" if args.explain else " (--explain shows their slowest statement's plan)"
        parts += [f"Missed or failed: {len(missed)} scenario(s){hint}", ""]
    parts.append(f"Total benchmark time {(time.perf_counter() - started) / 60:.1f} min; load average at end "
                 f"{load_average()}.")
    return "\n".join(parts)


def _counts() -> dict[str, int]:
    """Row counts from the planner's statistics (an exact count of 10M rows would take seconds)."""
    from django.db import connection

    names = {"members": "members_member", "orders": "members_order", "ledger": "points_pointstransaction",
             "redemptions": "points_redemption"}
    out = {}
    with connection.cursor() as c:
        for key, name in names.items():
            c.execute("SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = to_regclass(%s)", [name])
            out[key] = c.fetchone()[0]
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    django_setup()
    started = time.perf_counter()
    timings = []
    if args.skip_load:
        from django.db import connection

        if connection.settings_dict["ENGINE"] != "django.db.backends.postgresql":
            print("bench.admin: needs PostgreSQL (DATABASE_URL)", file=sys.stderr)
            return 2
        from django.db import OperationalError

        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT EXISTS (SELECT 1 FROM pg_class WHERE relname = 'members_member' "
                               "AND reltuples > 0)")
                loaded = cursor.fetchone()[0]
        except OperationalError as exc:
            print(f"bench.admin: {exc}", file=sys.stderr)
            return 2
        if not loaded:
            print("bench.admin: --skip-load needs a loaded (and analysed) database; load it first", file=sys.stderr)
            return 2
        log(f"measuring the loaded database {connection.settings_dict['NAME']!r}")
    else:
        try:
            name = bench_database_prepare(reset=args.reset)
        except BenchRefused as refused:
            print(f"bench.admin: {refused.message}", file=sys.stderr)
            return 2
        log(f"database {name!r} ready; loading")
        timings = load(args)
    machine = machine_description()
    results = measure(args)
    print(report(args, machine, timings, results, started))
    return 0


if __name__ == "__main__":
    sys.exit(main())
