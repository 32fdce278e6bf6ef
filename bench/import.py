"""Order import at scale: `manage.py import_orders` on a generated file of 1,000,000 orders for 100,000 members,
end to end (rows and backfill), against a raw COPY of the same file and against django-import-export.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/loyalty_bench_import .venv/bin/python -m bench.import --reset

What one run measures, on one database, in this order (figures as Markdown on stdout, progress on stderr):

1. the **raw COPY** of the file into a bare table of text columns (no parsing, no constraint, no index): the floor
   any import of this file pays; best of two;
2. the **engine without points** (`--no-award-points`), in a child process of its own: rows phase (rows/s), backfill,
   whole run, peak RSS of that process; then the same file again (every row a duplicate);
3. the **engine with points** (`--award-points`) on emptied domain tables: the same figures; then `check_ledger`;
4. **django-import-export** in its fastest documented mode (`use_bulk`, `skip_diff`, `force_init_instance`) on a
   20,000-row file of new orders for members that exist, and the engine on the same kind of file, for the ratio.

The targets of issue 5: rows phase >= 50,000 rows/s; whole run <= 5x the raw COPY; peak memory < 500 MB;
>= 50x django-import-export's rows/s. The report says for each whether this run met it.
"""
import argparse
import csv
import json
import random
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

from bench.common import BenchRefused, bench_database_prepare, django_setup, load_average, machine_description

HEADER = ["order_id", "customer_id", "email", "name", "placed_at", "amount", "category", "status"]
CATEGORIES = ["apparel", "shoes", "beauty", "home", "kids", "sports"]
DOMAIN_TABLES = [
    # Everything an import writes, emptied between the measured runs (the ladder and policies stay).
    "points_redemption", "points_pointstransaction", "tiers_tierchange", "tiers_growthevent",
    "members_orderrefund", "members_order", "members_importrowerror", "members_importrunmember", "members_importrun",
    "members_member",
]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.import", description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=1_000_000, help="Orders in the generated file (1,000,000).")
    parser.add_argument("--members", type=int, default=100_000, help="Customers they belong to (100,000).")
    parser.add_argument("--die-rows", type=int, default=20_000, help="Rows of the django-import-export file (20,000).")
    parser.add_argument("--dir", default="/tmp/bench_import", help="Where the generated files go (kept for reruns).")
    parser.add_argument("--workers", type=int, default=None, help="Passed to import_orders (default: its own).")
    parser.add_argument("--block-mb", type=int, default=None, help="Passed to import_orders (default: its own).")
    parser.add_argument("--skip-die", action="store_true", help="Skip the django-import-export comparison.")
    parser.add_argument("--json", metavar="PATH", help="Also write every figure as JSON into PATH.")
    parser.add_argument("--reset", action="store_true", help="Drop and recreate the benchmark database first.")
    parser.add_argument("--engine-child", nargs="*", help=argparse.SUPPRESS)
    parser.add_argument("--die-child", metavar="PATH", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# --- Files -----------------------------------------------------------------------------------------------------------


def orders_file_write(path: Path, *, orders: int, members: int, seed: int, id_prefix: str = "B") -> float:
    """A shop's export: `orders` rows over `members` customers and three years, amounts with two decimals, 3% of them
    refunded. Deterministic for a seed. Returns the seconds it took."""
    started = time.perf_counter()
    rng = random.Random(seed)
    start = datetime(2023, 1, 1)
    span = 3 * 365 * 24 * 3600
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    with tmp.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(HEADER)
        for n in range(1, orders + 1):
            customer = rng.randrange(1, members + 1)
            placed = start + timedelta(seconds=rng.randrange(span))
            writer.writerow([
                f"{id_prefix}{n:09d}", f"C{customer:07d}", f"c{customer}@example.com", f"Customer {customer}",
                placed.strftime("%Y-%m-%d %H:%M:%S"), f"{rng.randrange(500, 200_000) / 100:.2f}",
                CATEGORIES[n % len(CATEGORIES)], "refunded" if rng.random() < 0.03 else "paid",
            ])
    tmp.rename(path)
    return time.perf_counter() - started


def file_ready(path: Path, **kwargs) -> tuple[float | None, int]:
    """Generate the file unless it is there (same name = same parameters); returns (seconds or None, bytes)."""
    seconds = None
    if not path.exists():
        seconds = orders_file_write(path, **kwargs)
    return seconds, path.stat().st_size


# --- Measurements ----------------------------------------------------------------------------------------------------


def raw_copy_seconds(path: Path) -> float:
    """COPY the file into a bare table of text columns, the way `psql \\copy` would: the floor for this file."""
    from django.db import connection

    columns = ", ".join(f"{name} text" for name in HEADER)
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS bench_raw_copy")
        cursor.execute(f"CREATE TABLE bench_raw_copy ({columns})")
        started = time.perf_counter()
        with cursor.cursor.copy("COPY bench_raw_copy FROM STDIN (FORMAT csv, HEADER true)") as copy:
            with path.open("rb") as raw:
                while chunk := raw.read(1 << 20):
                    copy.write(chunk)
        seconds = time.perf_counter() - started
        cursor.execute("SELECT count(*) FROM bench_raw_copy")
        copied = cursor.fetchone()[0]
        cursor.execute("DROP TABLE bench_raw_copy")
    print(f"  raw COPY: {copied:,} rows in {seconds:.2f} s", file=sys.stderr)
    return seconds


def domain_tables_empty() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(DOMAIN_TABLES)} RESTART IDENTITY CASCADE")
        cursor.execute("VACUUM ANALYZE")


def engine_child(args) -> None:
    """In the child process: run the engine as the command does and print its figures as one JSON line."""
    import resource

    from members.importing.orders import orders_import

    path, award = args.engine_child[0], args.engine_child[1] == "award"
    options = {}
    if args.workers:
        options["workers"] = args.workers
    if args.block_mb:
        options["block_bytes"] = args.block_mb << 20
    last = [0.0]

    def progress(event) -> None:
        if event.seconds - last[0] >= 5:
            last[0] = event.seconds
            print(f"    {event.phase}: {event.done:,} after {event.seconds:.0f} s", file=sys.stderr)

    started = time.perf_counter()
    report = orders_import(path=path, award_points=award, on_progress=progress, **options)
    total = time.perf_counter() - started
    figures = {
        "rows_read": report.rows_read, "created": report.created, "duplicates": report.duplicates,
        "conflicts": report.conflicts, "failed": report.failed, "members_created": report.members_created,
        "backfilled_members": report.backfilled_members, "rows_seconds": report.rows_seconds,
        "backfill_seconds": report.backfill_seconds, "total_seconds": total,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    print("FIGURES " + json.dumps(figures))


def engine_in_child(args, path: Path, *, award: bool) -> dict:
    """The engine in a fresh process, so its memory peak is its own (Django set up, nothing else loaded)."""
    command = [sys.executable, "-m", "bench.import", "--engine-child", str(path), "award" if award else "no-award"]
    if args.workers:
        command += ["--workers", str(args.workers)]
    if args.block_mb:
        command += ["--block-mb", str(args.block_mb)]
    started = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
    wall = time.perf_counter() - started
    line = next(line for line in done.stdout.splitlines() if line.startswith("FIGURES "))
    figures = json.loads(line.removeprefix("FIGURES "))
    figures["process_seconds"] = wall
    print(f"  engine ({'award' if award else 'no award'}): {figures}", file=sys.stderr)
    return figures


def die_child(args) -> None:
    """In the child process: django-import-export's fastest documented mode on the file, orders only."""
    import resource

    import tablib
    from import_export import fields, resources, widgets

    from members.models import Member, Order

    class BulkOrderResource(resources.ModelResource):
        # The documented bulk mode: bulk_create in batches, no diff, no lookup of an existing instance per row.
        member = fields.Field(attribute="member", column_name="customer_id",
                              widget=widgets.ForeignKeyWidget(Member, field="external_id"))

        class Meta:
            model = Order
            fields = ("order_id", "member", "placed_at", "amount", "currency", "category", "status")
            import_id_fields = ("order_id",)
            use_bulk = True
            batch_size = 1000
            skip_diff = True
            force_init_instance = True

    with open(args.die_child, encoding="utf-8") as source:
        dataset = tablib.Dataset().load(source.read(), format="csv")
    dataset.append_col(["CNY"] * len(dataset), header="currency")
    started = time.perf_counter()
    result = BulkOrderResource().import_data(dataset, dry_run=False, raise_errors=True)
    seconds = time.perf_counter() - started
    print("FIGURES " + json.dumps({
        "rows": len(dataset), "new": result.totals.get("new", 0), "errors": len(result.row_errors()),
        "seconds": seconds, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


def die_in_child(path: Path) -> dict:
    done = subprocess.run([sys.executable, "-m", "bench.import", "--die-child", str(path)],
                          stdout=subprocess.PIPE, text=True, check=True)
    line = next(line for line in done.stdout.splitlines() if line.startswith("FIGURES "))
    figures = json.loads(line.removeprefix("FIGURES "))
    print(f"  django-import-export: {figures}", file=sys.stderr)
    return figures


def ledger_mismatches() -> int:
    from points.selectors import ledger_mismatches as mismatches

    return len(list(mismatches()))


def data_counts() -> dict:
    from django.db import connection

    counts = {}
    with connection.cursor() as cursor:
        for table in ("members_member", "members_order", "tiers_growthevent", "points_pointstransaction",
                      "tiers_tierchange"):
            cursor.execute(f"SELECT count(*) FROM {table}")
            counts[table] = cursor.fetchone()[0]
    return counts


# --- Report ----------------------------------------------------------------------------------------------------------


def _met(ok: bool) -> str:
    return "met" if ok else "**not met**"


def report(args, machine, files, copy_runs, plain, plain_again, award, award_counts, mismatches, die, engine_small):
    copy_best = min(copy_runs)
    lines = [f"## Order import (bench/import), {datetime.now():%Y-%m-%d %H:%M}", ""]
    lines += ["| machine | |", "| --- | --- |"] + [f"| {k} | {v} |" for k, v in machine.items()] + [""]
    lines += [
        f"File: {args.orders:,} orders for {args.members:,} customers, {files['size'] / 1e6:.0f} MB "
        f"(8 columns, UTF-8, 3 years, 3% refunded).", "",
        "| run | rows | rows phase | rows/s | backfill | whole run | x raw COPY | peak RSS |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| raw COPY into a bare table (best of {len(copy_runs)}: "
        f"{', '.join(f'{s:.2f}' for s in copy_runs)} s) | {args.orders:,} | | "
        f"{args.orders / copy_best:,.0f} | | {copy_best:.2f} s | 1.0 | |",
    ]
    for label, run in (("import_orders --no-award-points", plain), ("same file again (all duplicates)", plain_again),
                       ("import_orders --award-points (emptied tables)", award)):
        lines.append(
            f"| {label} | {run['rows_read']:,} | {run['rows_seconds']:.1f} s | "
            f"{run['rows_read'] / run['rows_seconds']:,.0f} | {run['backfill_seconds']:.1f} s | "
            f"{run['total_seconds']:.1f} s | {run['total_seconds'] / copy_best:.1f} | {run['peak_rss_mib']:.0f} MiB |"
        )
    lines += [
        "", f"Outcome of the --award-points run: {award['created']:,} orders created, {award['members_created']:,} "
        f"members, {award['backfilled_members']:,} members backfilled; rows now "
        + ", ".join(f"{table} {count:,}" for table, count in award_counts.items())
        + f"; check_ledger mismatches: {mismatches}. The second run of the same file: "
        f"{plain_again['created']:,} created, {plain_again['duplicates']:,} duplicates.", "",
    ]
    worst = max(plain, award, key=lambda run: run["total_seconds"])
    fastest_rows = min(plain["rows_read"] / plain["rows_seconds"], award["rows_read"] / award["rows_seconds"])
    targets = [
        ("rows phase >= 50,000 rows/s", f"{fastest_rows:,.0f} rows/s (slower of the two runs)", fastest_rows >= 50_000),
        ("whole run <= 5x raw COPY", f"{worst['total_seconds'] / copy_best:.1f}x ({worst['total_seconds']:.1f} s "
         f"vs {copy_best:.2f} s)", worst["total_seconds"] <= 5 * copy_best),
        ("peak memory < 500 MB", f"{max(plain['peak_rss_mib'], award['peak_rss_mib']):.0f} MiB",
         max(plain["peak_rss_mib"], award["peak_rss_mib"]) * 1.048576 < 500),
    ]
    if die:
        die_rate = die["rows"] / die["seconds"]
        engine_rate = award["rows_read"] / award["rows_seconds"]
        lines += [
            f"django-import-export (use_bulk, skip_diff, force_init_instance, batch 1000) on {die['rows']:,} new "
            f"orders of existing members: {die['seconds']:.1f} s, {die_rate:,.0f} rows/s, peak RSS "
            f"{die['peak_rss_mib']:.0f} MiB. The engine on a file of the same shape: "
            f"{engine_small['rows_seconds']:.2f} s rows phase, "
            f"{engine_small['rows_read'] / engine_small['rows_seconds']:,.0f} rows/s "
            f"({engine_small['total_seconds']:.2f} s with backfill).", "",
        ]
        targets.append((">= 50x django-import-export rows/s",
                        f"{engine_rate / die_rate:.0f}x (1M-row rows phase) / "
                        f"{engine_small['rows_read'] / engine_small['rows_seconds'] / die_rate:.0f}x (same 20k file)",
                        engine_rate / die_rate >= 50))
    lines += ["| target | this run | |", "| --- | --- | --- |"]
    lines += [f"| {name} | {value} | {_met(ok)} |" for name, value, ok in targets]
    lines += ["", f"Load average at the end: {load_average()}."]
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    django_setup()
    if args.engine_child:
        engine_child(args)
        return 0
    if args.die_child:
        die_child(args)
        return 0
    try:
        bench_database_prepare(reset=args.reset)
    except BenchRefused as refused:
        print(refused.message, file=sys.stderr)
        return 2
    machine = machine_description()
    directory = Path(args.dir)
    big = directory / f"orders_{args.orders}_{args.members}.csv"
    small = directory / f"orders_die_{args.die_rows}_{args.members}.csv"
    small_engine = directory / f"orders_die_engine_{args.die_rows}_{args.members}.csv"
    print(f"files in {directory}", file=sys.stderr)
    generated, size = file_ready(big, orders=args.orders, members=args.members, seed=1)
    file_ready(small, orders=args.die_rows, members=args.members, seed=2, id_prefix="D")
    file_ready(small_engine, orders=args.die_rows, members=args.members, seed=3, id_prefix="E")
    files = {"size": size, "generated_seconds": generated}

    print("raw COPY", file=sys.stderr)
    copy_runs = [raw_copy_seconds(big) for _ in range(2)]
    from django.db import connections

    connections.close_all()
    print("engine, no points", file=sys.stderr)
    plain = engine_in_child(args, big, award=False)
    print("engine, same file again", file=sys.stderr)
    plain_again = engine_in_child(args, big, award=False)
    domain_tables_empty()
    connections.close_all()
    print("engine, --award-points", file=sys.stderr)
    award = engine_in_child(args, big, award=True)
    award_counts = data_counts()
    mismatches = ledger_mismatches()
    die = engine_small = None
    if not args.skip_die:
        connections.close_all()
        print("django-import-export", file=sys.stderr)
        die = die_in_child(small)
        connections.close_all()
        print("engine on a 20k file", file=sys.stderr)
        engine_small = engine_in_child(args, small_engine, award=True)
    text = report(args, machine, files, copy_runs, plain, plain_again, award, award_counts, mismatches, die,
                  engine_small)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps({
            "machine": machine, "files": files, "copy_runs": copy_runs, "plain": plain, "plain_again": plain_again,
            "award": award, "award_counts": award_counts, "mismatches": mismatches, "die": die,
            "engine_small": engine_small,
        }, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
