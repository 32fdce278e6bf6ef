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
import json
import statistics
import subprocess
import sys
import time
from datetime import date

from bench.common import (
    BenchRefused,
    bench_database_prepare,
    django_setup,
    load_average,
    log,
    machine_description,
    table,
)
from bench.tiers_load import as_of_moment, data_load, data_shape, meta_load, meta_save, state_restore
from bench.tiers_measure import explain_batch, recalc_child, recalc_in_child

DEFAULT_AS_OF = date(2026, 11, 22)  # a fixed day (its last moment, site time zone): runs are comparable
DEFAULT_SWEEP = "10000,20000,50000,100000"


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


def default_batch_size() -> int:
    from tiers.services import RECALCULATE_BATCH_SIZE

    return RECALCULATE_BATCH_SIZE


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
