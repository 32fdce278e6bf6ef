"""Points ledger benchmark: earn and redeem throughput through the services, and the expiry job over a million lots.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/loyalty_bench .venv/bin/python -m bench.ledger \
        [--lots 1000000] [--members N] [--ops 2000] [--threads 8] [--reset]

What it measures (figures printed as Markdown tables on stdout, progress on stderr):

1. `points_earn` ops/s: `--ops` credits over `--ops-members` members, sequentially on one connection, then with
   `--threads` threads (each its own connection, closed at the thread's end).
2. `reward_redeem` ops/s, the same way: members whose balance is spread over lots of 60 points and a reward of 100
   points with unlimited stock, so each FIFO draw touches 2-3 lots. Threaded twice: every thread on one shared
   reward (the realistic case: a popular reward), and each thread on its own reward (isolates the reward row lock).
3. `points_expire_due` over due credit lots built with set-based SQL (generate_series: members x lots per member,
   balances equal to the sum of their lots' remaining, so the ledger check passes), at `--lots`/10 and at `--lots`.
   Each run is a fresh child process, so its memory figures are its own: ru_maxrss growth over the process's
   baseline after Django is set up, and in a second run on a second set of the same size (tracemalloc slows pure
   Python about fourfold, so the timed run goes without it) the tracemalloc peak of Python allocations.
   Then `ledger_mismatches()` (what `manage.py check_ledger` runs) before and after the large run, and a second
   `points_expire_due`, which must expire nothing.

It needs a PostgreSQL database of its own: it creates the database when missing, refuses one that already has
members unless --reset (which drops and recreates it, and only a database whose name contains "bench"), and
migrates. Not part of the test suite.
"""
import argparse
import gc
import json
import math
import os
import subprocess
import sys
import time
from uuid import uuid4

from bench.common import (
    BenchRefused,
    OpsResult,
    bench_database_prepare,
    current_rss_mib,
    django_setup,
    load_average,
    log,
    machine_description,
    max_rss_mib,
    run_sequential,
    run_threaded,
    table,
)

LOTS_PER_REDEEM_LOT = 60  # points per lot of the redeeming members
REWARD_COST = 100  # so a redemption draws from 2 or 3 lots of 60


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.ledger", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--lots", type=int, default=1_000_000, help="Due lots of the large expiry run (default 1,000,000)."
    )
    parser.add_argument(
        "--members", type=int, default=None, help="Members holding those lots (default lots/10: 10 lots each)."
    )
    parser.add_argument("--ops", type=int, default=2_000, help="Earn and redeem operations per mode (default 2,000).")
    parser.add_argument(
        "--ops-members", type=int, default=1_000, help="Members the operations spread over (default 1,000)."
    )
    parser.add_argument(
        "--threads", type=int, default=8, help="Threads (connections) of the concurrent modes (default 8)."
    )
    parser.add_argument(
        "--batch-members", type=int, default=500, help="points_expire_due's batch_members (default 500)."
    )
    parser.add_argument(
        "--no-tracemalloc",
        action="store_true",
        help="Skip the expiry runs under tracemalloc (they take about four times as long as the timed runs).",
    )
    parser.add_argument("--profile", metavar="PATH", help="cProfile the large timed expiry run into PATH (slows it).")
    parser.add_argument("--reset", action="store_true", help="Drop and recreate the benchmark database first.")
    # Internal: one expiry run in a fresh process (its memory figures are its own).
    parser.add_argument("--expire-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.members is None:
        args.members = max(1, args.lots // 10)
    if args.ops_members < args.threads:
        parser.error("--ops-members must be at least --threads (each thread works on its own members)")
    if args.lots < args.members:
        parser.error("--lots must be at least --members (every member holds at least one lot)")
    return args


# --- Data, built set-based ----------------------------------------------------------------------------------------


def members_insert(cursor, *, tag: str, count: int) -> tuple[int, int]:
    """Insert `count` members (every NOT NULL column of members_member given, in the base tier); returns the
    first and last id, which are contiguous."""
    from tiers.models import Tier

    base_tier = Tier.objects.order_by("rank").values_list("pk", flat=True).first()
    cursor.execute(
        """
        WITH created AS (
            INSERT INTO members_member (
                external_id, email, phone, name, region, joined_at, email_opt_in, sms_opt_in, referral_code,
                growth_value, points_balance, points_pending, points_debt, lifetime_spend, order_count,
                created_at, updated_at, blocked_reason, is_blocked, tier_id
            )
            SELECT 'bench-' || %(tag)s || '-' || i, '', '', '', '', now() - interval '3 years', false, false,
                   %(tag)s || lpad(i::text, 10, '0'),
                   0, 0, 0, 0, 0, 0, now(), now(), '', false, %(tier)s
            FROM generate_series(1, %(count)s) AS i
            ORDER BY i
            RETURNING id
        )
        SELECT min(id), max(id), count(*) FROM created
        """,
        {"tag": tag, "count": count, "tier": base_tier},
    )
    first, last, created = cursor.fetchone()
    if created != count or last - first + 1 != count:
        raise RuntimeError(f"members {first}..{last} are not contiguous ({created} created)")
    return first, last


def lots_insert(
    cursor, *, tag: str, first_member: int, members: int, lots: int, amount_sql: str, expires_sql: str
) -> None:
    """Insert `lots` credit lots, lot k for member first + k % members (so lots spread evenly), whole (remaining ==
    amount); `amount_sql` and `expires_sql` are SQL expressions (without %) of k and j, the member's lot number."""
    cursor.execute(
        f"""
        INSERT INTO points_pointstransaction (
            member_id, kind, amount, remaining, expires_at, pending_until, debt_delta, reference, idempotency_key,
            created_at, note
        )
        SELECT %(first)s + k %% %(members)s, 'earn', a.amount, a.amount, e.expires_at, NULL, 0, '',
               'bench:' || %(tag)s || ':' || k, e.expires_at - interval '24 months', ''
        FROM generate_series(0, %(lots)s - 1) AS k
        CROSS JOIN LATERAL (SELECT k / %(members)s AS j) AS n
        CROSS JOIN LATERAL (SELECT ({amount_sql})::bigint AS amount) AS a
        CROSS JOIN LATERAL (SELECT ({expires_sql}) AS expires_at) AS e
        ORDER BY k
        """,
        {"first": first_member, "members": members, "lots": lots, "tag": tag},
    )


def balances_from_lots(cursor, *, first: int, last: int) -> None:
    """points_balance = the sum of the member's lots' remaining, so the ledger invariants hold."""
    cursor.execute(
        """
        UPDATE members_member AS m SET points_balance = s.total
        FROM (
            SELECT member_id, sum(remaining) AS total FROM points_pointstransaction
            WHERE member_id BETWEEN %(first)s AND %(last)s GROUP BY member_id
        ) AS s
        WHERE m.id = s.member_id
        """,
        {"first": first, "last": last},
    )


def vacuum_analyze() -> None:
    """What autovacuum would have done on a live system: fresh statistics and visibility for the planner."""
    from django.db import connection

    with connection.cursor() as cursor:
        for name in ("members_member", "points_pointstransaction", "points_pointsallocation"):
            cursor.execute(f"VACUUM (ANALYZE) {name}")


def due_lots_build(*, tag: str, members: int, lots: int) -> float:
    """`members` members holding `lots` lots that are all due (expired 1 to 30 days ago). Returns seconds."""
    from django.db import connection, transaction

    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        first, last = members_insert(cursor, tag=tag, count=members)
        lots_insert(
            cursor,
            tag=tag,
            first_member=first,
            members=members,
            lots=lots,
            amount_sql="50 + mod(k * 37, 451)",
            expires_sql="now() - make_interval(days => 1 + mod(k, 30)::int)",
        )
        balances_from_lots(cursor, first=first, last=last)
    vacuum_analyze()
    return time.perf_counter() - started


# --- Operations through the services ------------------------------------------------------------------------------


def ops_members_build(*, tag: str, count: int, lots_each: int) -> list[int]:
    """`count` members; with `lots_each` > 0 each holds that many live lots of 60 points, expiring one day apart
    from next month on (so FIFO order is their order). Returns the member ids."""
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as cursor:
        first, last = members_insert(cursor, tag=tag, count=count)
        if lots_each:
            lots_insert(
                cursor,
                tag=tag,
                first_member=first,
                members=count,
                lots=count * lots_each,
                amount_sql=str(LOTS_PER_REDEEM_LOT),
                expires_sql="now() + interval '30 days' + make_interval(days => j::int)",
            )
            balances_from_lots(cursor, first=first, last=last)
    return list(range(first, last + 1))


def members_by_pk(pks: list[int]) -> dict:
    from members.models import Member

    return Member.objects.in_bulk(pks)


def earn_op(member_pks: list[int], phase: str):
    """One earn: a BONUS credit of 10-59 points, idempotency key unique per op (a new lot each time)."""
    from points.services import points_earn

    members = members_by_pk(member_pks)
    run = uuid4().hex[:8]

    def op(i: int) -> None:
        points_earn(
            member=members[member_pks[i % len(member_pks)]],
            amount=10 + i % 50,
            idempotency_key=f"bench:{run}:earn:{phase}:{i}",
            reference="bench",
        )

    return op


def redeem_op(member_pks: list[int], phase: str, reward_code):
    """One redemption of a 100-point reward; `reward_code(i)` names the reward of op i."""
    from points.services import reward_redeem

    members = members_by_pk(member_pks)
    run = uuid4().hex[:8]

    def op(i: int) -> None:
        _redemption, created = reward_redeem(
            member=members[member_pks[i % len(member_pks)]],
            reward_code=reward_code(i),
            idempotency_key=f"bench:{run}:redeem:{phase}:{i}",
        )
        if not created:
            raise AssertionError("a fresh idempotency key replayed an old redemption")

    return op


def rewards_create(count: int) -> list[str]:
    from points.models import Reward

    codes = [f"bench-gift-{n}" for n in range(count)]
    Reward.objects.bulk_create(
        [Reward(code=code, name=f"Bench gift {n}", kind=Reward.Kind.GIFT, points_cost=REWARD_COST, stock=None)
         for n, code in enumerate(codes)]
    )
    return codes


def allocations_per_redemption() -> float:
    from django.db.models import Count

    from points.models import PointsTransaction

    counts = (
        PointsTransaction.objects.filter(kind=PointsTransaction.Kind.REDEEM)
        .annotate(n=Count("allocations"))
        .values_list("n", flat=True)
    )
    counts = list(counts)
    return sum(counts) / len(counts) if counts else 0.0


def operations_bench(args) -> list[tuple[str, str, OpsResult]]:
    results = []
    n, threads = args.ops, args.threads

    log(f"earn: {args.ops_members:,} members")
    earners = ops_members_build(tag="BE", count=args.ops_members, lots_each=0)
    log(f"earn: {n:,} sequential")
    results.append(("points_earn", "sequential, 1 connection", run_sequential(earn_op(earners, "seq"), n)))
    log(f"earn: {n:,} on {threads} threads")
    per_thread = [earners[no::threads] for no in range(threads)]
    results.append(
        (
            "points_earn",
            f"{threads} threads, own connections",
            # Thread `no` runs ops no, no+threads, ...; its members are earners[no::threads], so threads contend
            # on the database, not on one member's row lock.
            run_threaded(lambda no: _strided(earn_op(per_thread[no], f"thr{no}"), threads), n, threads),
        )
    )

    # The busiest member's redemptions over the three modes below (sequential: ops spread over all members;
    # threaded: each thread's ops over its own stride of members, twice).
    busiest_thread_member = math.ceil(math.ceil(n / threads) / (args.ops_members // threads))
    redemptions_each = math.ceil(n / args.ops_members) + 2 * busiest_thread_member
    lots_each = math.ceil(redemptions_each * REWARD_COST / LOTS_PER_REDEEM_LOT) + 1
    log(f"redeem: {args.ops_members:,} members x {lots_each} lots of {LOTS_PER_REDEEM_LOT} points")
    redeemers = ops_members_build(tag="BR", count=args.ops_members, lots_each=lots_each)
    codes = rewards_create(threads)
    shared = codes[0]
    log(f"redeem: {n:,} sequential")
    results.append(
        ("reward_redeem", "sequential, 1 connection", run_sequential(redeem_op(redeemers, "seq", lambda i: shared), n))
    )
    per_thread = [redeemers[no::threads] for no in range(threads)]
    log(f"redeem: {n:,} on {threads} threads, one shared reward")
    results.append(
        (
            "reward_redeem",
            f"{threads} threads, one shared reward",
            run_threaded(
                lambda no: _strided(redeem_op(per_thread[no], f"thr{no}", lambda i: shared), threads), n, threads
            ),
        )
    )
    log(f"redeem: {n:,} on {threads} threads, a reward per thread")
    results.append(
        (
            "reward_redeem",
            f"{threads} threads, a reward per thread",
            run_threaded(
                lambda no: _strided(redeem_op(per_thread[no], f"own{no}", lambda i, c=codes[no]: c), threads),
                n,
                threads,
            ),
        )
    )
    return results


def _strided(op, threads: int):
    """Thread `no` receives ops no, no+threads, ...: map them to 0, 1, 2, ... of its own members."""
    return lambda i: op(i // threads)


# --- Expiry -------------------------------------------------------------------------------------------------------


def expire_child(args) -> None:
    """One points_expire_due run in this (fresh) process; prints its figures as JSON on the last line."""
    import tracemalloc

    from django.db import connection

    from points.services import points_expire_due

    connection.ensure_connection()
    gc.collect()
    baseline_maxrss, baseline_rss = max_rss_mib(), current_rss_mib()
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
    if args.trace:
        tracemalloc.start()
    started = time.perf_counter()
    if profiler:
        profiler.enable()
    result = points_expire_due(batch_members=args.batch_members)
    if profiler:
        profiler.disable()
    seconds = time.perf_counter() - started
    traced_peak = tracemalloc.get_traced_memory()[1] / 1024 / 1024 if args.trace else None
    if args.trace:
        tracemalloc.stop()
    if profiler:
        profiler.dump_stats(args.profile)
    print(
        json.dumps(
            {
                "seconds": seconds,
                "members": result.members,
                "lots": result.lots,
                "points": result.points,
                "baseline_maxrss_mib": baseline_maxrss,
                "baseline_rss_mib": baseline_rss,
                "peak_maxrss_mib": max_rss_mib(),
                "traced_peak_mib": traced_peak,
            }
        )
    )


def expire_in_child(args, *, trace: bool, profile: str | None = None) -> dict:
    command = [sys.executable, "-m", "bench.ledger", "--expire-child", "--batch-members", str(args.batch_members)]
    if trace:
        command.append("--trace")
    if profile:
        command += ["--profile", profile]
    completed = subprocess.run(command, capture_output=True, text=True, env=os.environ.copy(), check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"expiry child failed ({completed.returncode}):\n{completed.stderr}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def ledger_check() -> tuple[int, float]:
    from points.selectors import ledger_mismatches

    started = time.perf_counter()
    problems = ledger_mismatches()
    return len(problems), time.perf_counter() - started


def counts() -> dict[str, int]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT count(*) FROM members_member), (SELECT count(*) FROM points_pointstransaction), "
            "(SELECT count(*) FROM points_pointsallocation)"
        )
        members, transactions, allocations = cursor.fetchone()
    return {"members": members, "transactions": transactions, "allocations": allocations}


def expiry_bench(args) -> tuple[list[dict], list[list]]:
    """At each size: a run timed without tracemalloc (it slows pure Python several-fold), then, on a second set of
    the same size, a run with tracemalloc for the Python allocation peak. Each run in a fresh child process."""
    runs, checks = [], []
    sizes = [(max(1, args.members // 10), max(1, args.lots // 10)), (args.members, args.lots)]
    if sizes[0][1] == sizes[1][1]:
        sizes = sizes[1:]
    for number, (members, lots) in enumerate(sizes, start=1):
        large = number == len(sizes)
        for trace in (False, True) if not args.no_tracemalloc else (False,):
            label = f"{_short(lots)} lots, tracemalloc {'on' if trace else 'off'}"
            log(f"expiry: building {lots:,} due lots of {members:,} members")
            build_s = due_lots_build(tag=f"X{number}{'T' if trace else 'U'}", members=members, lots=lots)
            log(f"expiry: built in {build_s:.1f} s")
            if large and not trace:
                problems, seconds = ledger_check()
                checks.append(
                    ["ledger_mismatches() before the large run", _size(), _verdict(problems), f"{seconds:.1f}"]
                )
                log(f"ledger check before: {problems} members with problems, {seconds:.1f} s")
            log(f"expiry: {label} (child process)")
            figures = expire_in_child(args, trace=trace, profile=args.profile if large and not trace else None)
            figures.update(label=label, build_s=build_s)
            runs.append(figures)
            log(f"expiry: {figures['lots']:,} lots in {figures['seconds']:.1f} s")
            if figures["lots"] != lots:
                raise RuntimeError(f"expected {lots:,} lots to expire, the job expired {figures['lots']:,}")
    problems, seconds = ledger_check()
    checks.append(["ledger_mismatches() after", _size(), _verdict(problems), f"{seconds:.1f}"])
    log(f"ledger check after: {problems} members with problems, {seconds:.1f} s")

    from points.services import points_expire_due

    started = time.perf_counter()
    again = points_expire_due(batch_members=args.batch_members)
    seconds = time.perf_counter() - started
    checks.append(
        [
            "points_expire_due again (nothing due)",
            _size(),
            f"expired {again.lots:,} lots" + ("" if again.lots == 0 else " (EXPECTED 0)"),
            f"{seconds:.2f}",
        ]
    )
    return runs, checks


def _short(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1_000 and n % 1_000 == 0:
        return f"{n // 1_000}k"
    return f"{n:,}"


def _size() -> str:
    c = counts()
    return f"{c['members']:,} members, {c['transactions']:,} transactions, {c['allocations']:,} allocations"


def _verdict(problems: int) -> str:
    return "passes (0 mismatches)" if problems == 0 else f"FAILS: {problems:,} members mismatched"


# --- Report -------------------------------------------------------------------------------------------------------


def report(args, machine, ops, runs, checks, started) -> str:
    parts = [
        (
            f"bench.ledger · lots={args.lots:,} members={args.members:,} ops={args.ops:,} "
            f"ops-members={args.ops_members:,} threads={args.threads} batch-members={args.batch_members}"
        ),
        "",
        table(["machine", ""], [[k, v] for k, v in machine.items()]),
        "",
        table(
            ["operation", "mode", "ops", "wall s", "ops/s", "p50 ms", "p95 ms"],
            [
                [name, mode, f"{r.ops:,}", f"{r.seconds:.2f}", f"{r.per_second:,.0f}", f"{r.percentile_ms(50):.1f}",
                 f"{r.percentile_ms(95):.1f}"]
                for name, mode, r in ops
            ],
        ),
        "",
        f"Lots drawn per redemption (allocations per REDEEM debit): {allocations_per_redemption():.2f}",
        "",
        table(
            ["points_expire_due", "lots", "members", "wall s", "lots/s", "s per 1M lots", "tracemalloc peak MiB",
             "maxrss baseline MiB", "maxrss peak MiB", "maxrss growth MiB"],
            [
                [r["label"], f"{r['lots']:,}", f"{r['members']:,}", f"{r['seconds']:.1f}",
                 f"{r['lots'] / r['seconds']:,.0f}", f"{r['seconds'] / r['lots'] * 1e6:.1f}",
                 "-" if r["traced_peak_mib"] is None else f"{r['traced_peak_mib']:.1f}",
                 f"{r['baseline_maxrss_mib']:.1f}", f"{r['peak_maxrss_mib']:.1f}",
                 f"{r['peak_maxrss_mib'] - r['baseline_maxrss_mib']:.1f}"]
                for r in runs
            ],
        ),
        "",
        table(["check", "ledger size", "result", "wall s"], checks),
    ]
    largest = max(runs, key=lambda r: r["lots"])
    timed = [r for r in runs if r["lots"] == largest["lots"] and r["traced_peak_mib"] is None] or [largest]
    per_million = timed[0]["seconds"] / largest["lots"] * 1e6
    parts += [
        "",
        (
            f"Expiry: {per_million:.1f} s per million lots. Total benchmark time {(time.perf_counter() - started) / 60:.1f} min; load average at end "
            f"{load_average()}."
        ),
    ]
    return "\n".join(parts)


def main(argv=None) -> int:
    args = parse_args(argv)
    django_setup()
    if args.expire_child:
        expire_child(args)
        return 0
    started = time.perf_counter()
    try:
        name = bench_database_prepare(reset=args.reset)
    except BenchRefused as refused:
        print(f"bench.ledger: {refused.message}", file=sys.stderr)
        return 2
    log(f"database {name!r} ready")
    machine = machine_description()
    ops = operations_bench(args)
    runs, checks = expiry_bench(args)
    print(report(args, machine, ops, runs, checks, started))
    return 0


if __name__ == "__main__":
    sys.exit(main())
