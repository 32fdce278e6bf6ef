"""bench.tiers' measured part: one `tiers_recalculate` in a fresh child process (`python -m bench.tiers
--recalc-child`) with its statements counted and timed on every connection and its memory figures, and the EXPLAIN
(ANALYZE, BUFFERS) of one batch.

Split out of bench/tiers.py (which keeps the runner and the report) so each module stays under 600 lines; the
measurements are the ones the benchmark always took.
"""

import gc
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter

from bench.common import current_rss_mib, load_average, max_rss_mib
from bench.tiers_load import as_of_moment

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
