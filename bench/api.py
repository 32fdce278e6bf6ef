"""API load benchmark: the storefront API under gunicorn on PostgreSQL, driven by wrk with 32 keep-alive clients.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/loyalty_bench_api .venv/bin/python -m bench.api --reset \
        [--members 100000] [--orders 1000000] [--clients 32] [--low-clients 4] [--duration 15] [--warmup 5] \
        [--worker-class gthread] [--workers 3] [--threads 4] [--sweep] [--skip-load] [--json PATH]

What it does (figures printed as Markdown tables on stdout, progress on stderr):

1. Load a realistic history through the product's own set-based path: a shop export of `--orders` orders for
   `--members` customers over the last three years (the first `--long-members` customers, 20 by default, take 2 % of
   the orders: about 1,000 each against 10 for the others; 3 % refunded) imported by `orders_import(award_points=True)`
   (the engine behind `manage.py import_orders`): orders, growth events, tier history and point lots, most of the
   older ones expired. Then VACUUM (ANALYZE). An API key with every scope and no rate limit, a reward of 10 points with
   unlimited stock, a reward of 10 points with 10,000,000 in stock and a member `bench-hammer` holding 10,000,000
   points.
2. SQL statements per request of each endpoint, counted with CaptureQueriesContext through Django's test client on a
   member with a short history and one with a long history: they must be equal (the member detail's differ by
   one when the two are in different tiers: the top tier has no next tier). Then the CPU time per request of the
   app (this process) and of its PostgreSQL backend, over `--cpu-requests` sequential requests.
3. gunicorn serving config.wsgi with bench.api_site.settings (the product's settings, DEBUG off, plus the baseline
   endpoint /bench/bare/: DRF, no auth, no throttle, no database) on 127.0.0.1. `--sweep` first tries worker classes
   and counts on the bare and member-detail endpoints.
4. wrk (Debian's package) with bench/api_wrk.lua, keep-alive connections, each scenario warmed up, then measured at
   `--clients` (the issue's 32) and at `--low-clients` (a concurrency the server is not queue-bound at): bare DRF,
   member detail, order posting, order posting with an Idempotency-Key, redemptions over many members, and 32
   clients redeeming on the one member `bench-hammer`. Every response is counted by status: anything but the expected
   (200 GET, 201 POST, and 409 for redemptions) fails the run.

It ends with the issue's targets and whether this run met each; exit 1 when one is not met. It needs a PostgreSQL
database of its own: it creates it when missing, refuses one that already has members unless --reset (which drops
and recreates it, and only a database whose name contains "bench"), and migrates. Not part of the test suite.
"""
import argparse
import csv
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

from bench.common import (
    BenchRefused,
    bench_database_prepare,
    django_setup,
    load_average,
    log,
    machine_description,
    table,
)

SETTINGS = "bench.api_site.settings"
LUA = Path(__file__).with_name("api_wrk.lua")
HEADER = ["order_id", "customer_id", "email", "name", "placed_at", "amount", "category", "status"]
CATEGORIES = ["apparel", "shoes", "beauty", "home", "kids", "sports"]
HAMMER = "bench-hammer"
REWARD_SPREAD = "bench-gift"  # unlimited stock: redeemers of different members do not queue on it
REWARD_STOCK = "bench-stock"  # limited stock: every redemption locks its row too
SCENARIOS = [
    # name, wrk mode, statuses that are not failures
    ("bare DRF (GET /bench/bare/)", "bare", {200}),
    ("member detail (GET members/{id}/)", "member", {200}),
    ("order posting (POST orders/)", "order", {201}),
    ("order posting + Idempotency-Key", "order_idem", {201}),
    ("redemption, many members (POST redemptions/)", "redeem", {201, 409}),
    ("redemption, one member's balance", "redeem_one", {201, 409}),
]
# The targets: share of the bare endpoint's throughput and p99 (ms) at the 32 clients.
TARGETS = {
    "member": {"ratio": 0.50, "p99": 20.0},
    "order": {"ratio": 0.25, "p99": 50.0},
    "order_idem": {"ratio": 0.25, "p99": 50.0},
    "redeem": {"p99": 50.0},
    "redeem_one": {"rps": 100.0, "p99": 50.0},
}
DEFAULT_SWEEP = "sync:2,sync:3,sync:5,gthread:2x4,gthread:3x4,gthread:2x8"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.api", description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=100_000, help="Customers of the history (default 100,000).")
    parser.add_argument("--orders", type=int, default=1_000_000, help="Orders of the history (default 1,000,000).")
    parser.add_argument(
        "--long-members", type=int, default=20, help="Customers with long histories (2 %% of the orders; default 20)."
    )
    parser.add_argument("--clients", type=int, default=32, help="Concurrent keep-alive clients (default 32).")
    parser.add_argument(
        "--low-clients", type=int, default=4, help="The second, not queue-bound concurrency (default 4; 0: skip)."
    )
    parser.add_argument("--duration", type=int, default=15, help="Seconds measured per scenario (default 15).")
    parser.add_argument("--warmup", type=int, default=5, help="Seconds of warm-up before each (default 5).")
    parser.add_argument("--wrk-threads", type=int, default=2, help="wrk's threads (default 2).")
    parser.add_argument("--worker-class", default="gthread", choices=["sync", "gthread"], help="gunicorn's.")
    parser.add_argument("--workers", type=int, default=3, help="gunicorn worker processes (default 3).")
    parser.add_argument("--threads", type=int, default=4, help="Threads per gthread worker (default 4).")
    parser.add_argument("--port", type=int, default=8765, help="Port on 127.0.0.1 (default 8765).")
    parser.add_argument(
        "--sweep", nargs="?", const=DEFAULT_SWEEP, default="",
        help=f"First compare gunicorn configurations on bare and member detail (default list {DEFAULT_SWEEP}).",
    )
    parser.add_argument(
        "--cpu-requests", type=int, default=100,
        help="Sequential requests per endpoint of the CPU-per-request table (default 100; 0: skip).",
    )
    parser.add_argument("--only", default="", help="Comma-separated wrk modes to run (default: all).")
    parser.add_argument("--dir", default="/tmp/bench_api", help="Where the generated export is kept.")
    parser.add_argument("--json", metavar="PATH", help="Also write every figure as JSON into PATH.")
    parser.add_argument("--skip-load", action="store_true", help="Reuse the loaded database.")
    parser.add_argument("--reset", action="store_true", help="Drop and recreate the benchmark database first.")
    args = parser.parse_args(argv)
    if args.members <= args.long_members or args.orders < args.members:
        parser.error("--members must exceed --long-members, and --orders be at least --members")
    return args


# --- Data -----------------------------------------------------------------------------------------------------------


def orders_file_write(path: Path, *, orders: int, members: int, long_members: int, now) -> None:
    """A shop's export over the three years before `now`: customers C0000001..; the first `long_members` take 2 % of
    the orders, the rest spread evenly. Deterministic but for `now`."""
    rng = random.Random(8)
    span = 3 * 365 * 24 * 3600
    start = now - timedelta(seconds=span + 3600)
    tmp = path.with_suffix(".part")
    with tmp.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(HEADER)
        for n in range(1, orders + 1):
            if long_members and rng.random() < 0.02:
                customer = rng.randrange(1, long_members + 1)
            else:
                customer = rng.randrange(long_members + 1, members + 1)
            placed = start + timedelta(seconds=rng.randrange(span))
            writer.writerow([
                f"H{n:09d}", f"C{customer:07d}", f"c{customer}@example.com", f"Customer {customer}",
                placed.strftime("%Y-%m-%d %H:%M:%S"), f"{rng.randrange(500, 200_000) / 100:.2f}",
                CATEGORIES[n % len(CATEGORIES)], "refunded" if rng.random() < 0.03 else "paid",
            ])
    tmp.rename(path)


def history_load(args) -> dict:
    from django.db import connection
    from django.utils import timezone

    from members.importing.orders import orders_import

    directory = Path(args.dir)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"orders_{args.orders}_{args.members}_{args.long_members}.csv"
    started = time.perf_counter()
    # Placed in the site's local time (the import's default): the last order an hour ago.
    orders_file_write(path, orders=args.orders, members=args.members, long_members=args.long_members,
                      now=timezone.localtime().replace(tzinfo=None))
    log(f"load: export written in {time.perf_counter() - started:.0f} s ({path.stat().st_size >> 20} MB)")
    started = time.perf_counter()
    last = [0.0]

    def progress(event) -> None:
        if event.seconds - last[0] >= 10:
            last[0] = event.seconds
            log(f"load: {event.phase} {event.done:,} after {event.seconds:.0f} s")

    report = orders_import(path=path, award_points=True, on_progress=progress)
    seconds = time.perf_counter() - started
    log(f"load: imported {report.created:,} orders, {report.members_created:,} members in {seconds:.0f} s")
    with connection.cursor() as cursor:
        cursor.execute("VACUUM (ANALYZE)")
    path.unlink()
    return {"import_seconds": round(seconds, 1), "orders": report.created, "members": report.members_created}


def fixtures_create() -> str:
    """The API key (every scope, no rate limit), the two rewards and the hammered member. Returns the key."""
    from members.models import ApiKey, ApiScope, Member
    from members.services import member_register
    from points.models import Reward
    from points.services import points_earn

    ApiKey.objects.filter(name="bench.api").delete()
    _obj, key = ApiKey.objects.create_key(
        name="bench.api", scopes=[scope.value for scope in ApiScope], rate_limit_per_minute=0
    )
    Reward.objects.update_or_create(code=REWARD_SPREAD, defaults={"name": "Bench gift", "points_cost": 10})
    Reward.objects.update_or_create(
        code=REWARD_STOCK, defaults={"name": "Bench stock gift", "points_cost": 10, "stock": 10_000_000}
    )
    if not Member.objects.filter(external_id=HAMMER).exists():
        member, _created = member_register(external_id=HAMMER, name="Bench hammer")
        points_earn(member=member, amount=10_000_000, idempotency_key="bench-hammer-credit", note="bench.api")
    return key


def data_counts() -> dict:
    from django.db import connection

    counts = {}
    with connection.cursor() as cursor:
        for label, name in (("members", "members_member"), ("orders", "members_order"),
                            ("growth events", "tiers_growthevent"), ("ledger rows", "points_pointstransaction"),
                            ("redemptions", "points_redemption")):
            cursor.execute(f"SELECT count(*) FROM {name}")
            counts[label] = cursor.fetchone()[0]
        cursor.execute("SELECT max(order_count), percentile_disc(0.5) WITHIN GROUP (ORDER BY order_count) "
                       "FROM members_member")
        counts["orders per member (max / median)"] = "{} / {}".format(*cursor.fetchone())
    return counts


# --- Statements per request -----------------------------------------------------------------------------------------


def history_pair() -> tuple[str, str]:
    """The longest history and a short one (1 to 20 orders, 100 points to redeem), in the same tier when one holds
    both: the member detail's statements depend on the tier (the top tier has no next tier to show, one statement
    fewer), and must not on the history. The long histories usually reach the top tier, the short ones seldom."""
    from members.models import Member

    customers = Member.objects.filter(external_id__startswith="C")
    long = customers.order_by("-order_count", "pk").first()
    shorts = customers.filter(order_count__range=(1, 20), points_balance__gte=100).order_by("order_count", "pk")
    short = shorts.filter(tier_id=long.tier_id).first() or shorts.first()
    return long.external_id, short.external_id


def queries_per_request(key: str, *, long_member: str, short_member: str) -> list[list]:
    """Statements of one request per endpoint on a short and a long history (test client, same settings)."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    client = Client(HTTP_AUTHORIZATION=f"Api-Key {key}", HTTP_X_FORWARDED_PROTO="https", HTTP_HOST="127.0.0.1")
    placed = timezone.now().isoformat()
    token = f"q{int(time.time())}"

    def count(method, path, body=None, **headers):
        with CaptureQueriesContext(connection) as captured:
            if method == "get":
                response = client.get(path, **headers)
            else:
                response = client.post(path, data=json.dumps(body), content_type="application/json", **headers)
        return len(captured), response.status_code

    count("get", "/bench/bare/")
    count("get", f"/api/v1/members/{short_member}/")  # refreshes the key's last_used_at: not counted below
    for n, member in enumerate((short_member, long_member)):
        # An order makes a dormant member active (one UPDATE, once): both members active first, as in the run.
        count("post", "/api/v1/orders/", {"order_id": f"{token}-warm{n}", "customer_id": member, "placed_at": placed,
                                          "amount": "10.00"})
    rows = []
    cases = [
        ("bare DRF", lambda m, n: ("get", "/bench/bare/", None, {})),
        ("member detail", lambda m, n: ("get", f"/api/v1/members/{m}/", None, {})),
        ("order posting", lambda m, n: ("post", "/api/v1/orders/", {
            "order_id": f"{token}-{n}", "customer_id": m, "placed_at": placed, "amount": "120.00"}, {})),
        ("order posting + Idempotency-Key", lambda m, n: ("post", "/api/v1/orders/", {
            "order_id": f"{token}-i{n}", "customer_id": m, "placed_at": placed, "amount": "120.00"},
            {"HTTP_IDEMPOTENCY_KEY": f"{token}-i{n}"})),
        ("redemption", lambda m, n: ("post", "/api/v1/redemptions/", {
            "member": m, "reward": REWARD_SPREAD, "quantity": 1}, {"HTTP_IDEMPOTENCY_KEY": f"{token}-r{n}"})),
    ]
    for label, make in cases:
        figures = []
        for n, member in enumerate((short_member, long_member)):
            method, path, body, headers = make(member, n)
            figures.append(count(method, path, body, **headers))
        (short, short_status), (long, long_status) = figures
        rows.append([label, f"{short} ({short_status})", f"{long} ({long_status})",
                     "yes" if short == long else "NO"])
    return rows


def cpu_per_request(key: str, *, requests: int, members: int, long_members: int) -> list[list]:
    """CPU time per request, the app's (this process, Django's test client: the same middleware, views and
    serializers as under gunicorn, without the HTTP parsing) and its PostgreSQL backend's (/proc/<pid>/stat, same
    machine). Unlike wall time it hardly depends on what else runs on the machine, so it gives the ceiling a quiet
    machine would reach: CPUs x 1000 / (app + database ms) requests per second, the load generator left out."""
    from django.db import connection
    from django.test import Client
    from django.utils import timezone

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    stat = Path(f"/proc/{backend}/stat")
    if not stat.exists():
        return []  # PostgreSQL on another machine: no backend CPU to read
    ticks = os.sysconf("SC_CLK_TCK")

    def backend_seconds() -> float:
        fields = stat.read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime

    client = Client(HTTP_AUTHORIZATION=f"Api-Key {key}", HTTP_X_FORWARDED_PROTO="https", HTTP_HOST="127.0.0.1")
    placed = timezone.now().isoformat()
    token = f"c{int(time.time())}"
    rng = random.Random(5)

    def customer() -> str:
        n = rng.randint(1, long_members) if rng.random() < 0.05 else rng.randint(long_members + 1, members)
        return f"C{n:07d}"

    cases = [
        ("bare DRF", lambda i: client.get("/bench/bare/")),
        ("member detail", lambda i: client.get(f"/api/v1/members/{customer()}/")),
        ("order posting", lambda i: client.post("/api/v1/orders/", data=json.dumps({
            "order_id": f"{token}-{i}", "customer_id": customer(), "placed_at": placed, "amount": "120.00"}),
            content_type="application/json")),
        ("order posting + Idempotency-Key", lambda i: client.post("/api/v1/orders/", data=json.dumps({
            "order_id": f"{token}-i{i}", "customer_id": customer(), "placed_at": placed, "amount": "120.00"}),
            content_type="application/json", HTTP_IDEMPOTENCY_KEY=f"{token}-i{i}")),
        ("redemption", lambda i: client.post("/api/v1/redemptions/", data=json.dumps({
            "member": customer(), "reward": REWARD_SPREAD, "quantity": 1}), content_type="application/json",
            HTTP_IDEMPOTENCY_KEY=f"{token}-r{i}")),
    ]
    rows = []
    for label, make in cases:
        make(-1)
        app0, db0, wall0 = time.process_time(), backend_seconds(), time.perf_counter()
        for i in range(requests):
            make(i)
        app = (time.process_time() - app0) * 1000 / requests
        db = (backend_seconds() - db0) * 1000 / requests
        wall = (time.perf_counter() - wall0) * 1000 / requests
        ceiling = (os.cpu_count() or 1) * 1000 / (app + db)
        rows.append([label, f"{app:.2f}", f"{db:.2f}", f"{wall:.1f}", f"{ceiling:,.0f}"])
        log(f"cpu: {label}: app {app:.2f} ms, database {db:.2f} ms, wall {wall:.1f} ms")
    return rows


# --- The server -----------------------------------------------------------------------------------------------------


class Server:
    """gunicorn on 127.0.0.1:port with one configuration; stopped with SIGTERM (graceful), waited for."""

    def __init__(self, *, port: int, worker_class: str, workers: int, threads: int):
        self.port, self.worker_class, self.workers, self.threads = port, worker_class, workers, threads
        self.process = None

    @property
    def label(self) -> str:
        if self.worker_class == "gthread":
            return f"gthread, {self.workers} workers x {self.threads} threads"
        return f"sync, {self.workers} workers"

    def __enter__(self):
        static = Path("/tmp/bench_api_static")  # the API serves no static file; whitenoise wants the folder
        static.mkdir(exist_ok=True)
        env = dict(os.environ, DJANGO_SETTINGS_MODULE=SETTINGS, DEBUG="0", LOG_LEVEL="WARNING", STATIC_ROOT=str(static))
        command = [
            str(Path(sys.executable).with_name("gunicorn")), "config.wsgi:application",
            "--bind", f"127.0.0.1:{self.port}", "--workers", str(self.workers),
            "--worker-class", self.worker_class, "--threads", str(self.threads),
            # Keep-alive connections stay open between the load generator's requests (gthread; sync closes them).
            "--keep-alive", "30", "--backlog", "2048", "--log-level", "warning",
        ]
        self.process = subprocess.Popen(command, env=env, cwd=Path(__file__).resolve().parent.parent)
        # As behind the TLS proxy: without the header SECURE_SSL_REDIRECT answers 301.
        ready = urllib.request.Request(self.url("/bench/bare/"), headers={"X-Forwarded-Proto": "https"})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(ready, timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError("gunicorn exited while starting") from None
                time.sleep(0.3)
        else:
            self.__exit__()
            raise RuntimeError("gunicorn did not answer within 60 s")
        log(f"server: {self.label} on port {self.port}")
        return self

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __exit__(self, *exc):
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def wrk_run(server: Server, args, *, mode: str, clients: int, seconds: int, key: str, token: str) -> dict:
    from django.utils import timezone

    placed = (timezone.localtime() - timedelta(minutes=5)).isoformat(timespec="seconds")
    command = [
        "wrk", f"-t{min(args.wrk_threads, clients)}", f"-c{clients}", f"-d{seconds}s", "--timeout", "10s",
        "-s", str(LUA), server.url(), "--",
        mode, key, token, str(args.members), str(args.long_members), REWARD_STOCK if mode == "redeem_one"
        else REWARD_SPREAD, placed, HAMMER,
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    line = next((line for line in done.stdout.splitlines() if line.startswith("WRK ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no figures:\n{done.stdout}\n{done.stderr}")
    figures = json.loads(line.removeprefix("WRK "))
    figures["rps"] = figures["requests"] / figures["seconds"]
    figures["statuses"] = {int(k): v for k, v in figures["statuses"].items()}
    return figures


def scenario_measure(server, args, *, mode: str, clients: int, key: str, run: str) -> dict:
    if args.warmup:
        wrk_run(server, args, mode=mode, clients=clients, seconds=args.warmup, key=key, token=f"{run}w{clients}{mode}")
    figures = wrk_run(server, args, mode=mode, clients=clients, seconds=args.duration, key=key,
                      token=f"{run}m{clients}{mode}")
    log(f"  {mode} x{clients}: {figures['rps']:.0f} req/s, p50 {figures['p50_ms']:.1f} ms, "
        f"p99 {figures['p99_ms']:.1f} ms, statuses {figures['statuses']}, load {load_average()}")
    return figures


# --- Report ---------------------------------------------------------------------------------------------------------


def _ms(value: float) -> str:
    return f"{value:.1f}"


def _statuses(figures: dict) -> str:
    text = ", ".join(f"{status}: {n:,}" for status, n in sorted(figures["statuses"].items()))
    if figures["socket_errors"]:
        text += f", socket errors: {figures['socket_errors']}"
    return text


def results_table(results: dict, expected: dict, clients: int, *, targets: bool) -> tuple[str, list[str]]:
    """The scenarios at one concurrency; with `targets`, the issue's targets and pass/fail. Returns the table and
    the failures."""
    failures = []
    bare = results["bare"]["rps"]
    rows = []
    for name, mode, allowed in SCENARIOS:
        if mode not in results:
            continue
        figures = results[mode]
        bad = {s: n for s, n in figures["statuses"].items() if s not in allowed}
        status_ok = not bad and not figures["socket_errors"]
        if not status_ok:
            failures.append(f"{mode} x{clients}: unexpected responses {bad} / socket errors {figures['socket_errors']}")
        row = [name, f"{figures['rps']:,.0f}", _ms(figures["p50_ms"]), _ms(figures["p99_ms"]),
               f"{figures['rps'] / bare:.2f}" if mode != "bare" else "1.00", _statuses(figures)]
        if targets:
            wanted, verdicts = [], []
            target = TARGETS.get(mode, {})
            if "ratio" in target:
                wanted.append(f">= {target['ratio']:.2f} of bare")
                verdicts.append(figures["rps"] / bare >= target["ratio"])
            if "rps" in target:
                wanted.append(f">= {target['rps']:.0f}/s")
                verdicts.append(figures["rps"] >= target["rps"])
            if "p99" in target:
                wanted.append(f"p99 < {target['p99']:.0f} ms")
                verdicts.append(figures["p99_ms"] < target["p99"])
            if mode in ("redeem", "redeem_one"):
                wanted.append("only 201/409")
            verdicts.append(status_ok)
            ok = all(verdicts)
            if not ok and target:
                failures.append(f"{mode} x{clients}: target not met")
            row += ["; ".join(wanted) or "-", ("pass" if ok else "FAIL") if wanted else ("ok" if ok else "FAIL")]
        rows.append(row)
    headers = ["endpoint", "req/s", "p50 ms", "p99 ms", "x bare", "responses"]
    if targets:
        headers += ["target", "result"]
    return table(headers, rows, title=f"**{clients} concurrent keep-alive clients** ({expected['label']})"), failures


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ["DJANGO_SETTINGS_MODULE"] = SETTINGS
    django_setup()
    if shutil.which("wrk") is None:
        raise BenchRefused("bench.api needs wrk: apt-get install -y wrk")
    if not port_free(args.port):
        raise BenchRefused(f"Port {args.port} is taken: choose another with --port.")
    from django.conf import settings
    from django.db import connections

    figures = {"args": vars(args)}
    if args.skip_load:
        log(f"database {settings.DATABASES['default']['NAME']}: reusing the loaded data")
    else:
        name = bench_database_prepare(reset=args.reset)
        log(f"database {name}: migrated; loading")
        figures["load"] = history_load(args)
    key = fixtures_create()
    machine = machine_description()
    counts = data_counts()
    long_member, short_member = history_pair()
    query_rows = queries_per_request(key, long_member=long_member, short_member=short_member)
    cpu_rows = cpu_per_request(key, requests=args.cpu_requests, members=args.members,
                               long_members=args.long_members) if args.cpu_requests else []
    connections.close_all()

    print("## bench.api\n")
    print(table(["", ""], [[k, v] for k, v in machine.items()], title="**Machine**"))
    print()
    print(table(["", ""], [[k, f"{v:,}" if isinstance(v, int) else v] for k, v in counts.items()], title="**Data**"))
    print()
    from members.models import Member

    described = {
        external_id: f"{external_id}, {orders} orders, tier {tier or '-'}"
        for external_id, orders, tier in Member.objects.filter(external_id__in=[short_member, long_member])
        .values_list("external_id", "order_count", "tier__code")
    }
    print(table(
        ["endpoint", f"short history ({described[short_member]})", f"long history ({described[long_member]})",
         "same count"], query_rows,
        title="**SQL statements per request** (status in brackets)",
    ))
    print(flush=True)
    figures["queries"] = query_rows
    if cpu_rows:
        print(table(
            ["endpoint", "app CPU ms", "PostgreSQL CPU ms", "wall ms", f"ceiling req/s on {os.cpu_count()} CPUs"],
            cpu_rows,
            title=f"**CPU per request** ({args.cpu_requests} sequential requests each, test client; the ceiling is "
            "CPUs x 1000 / (app + PostgreSQL ms), load generator and contention left out)",
        ))
        print(flush=True)
        figures["cpu"] = cpu_rows
    run = f"r{int(time.time())}"

    if args.sweep:
        sweep_rows = []
        figures["sweep"] = []
        for spec in args.sweep.split(","):
            worker_class, _sep, size = spec.partition(":")
            workers, _x, threads = size.partition("x")
            server = Server(port=args.port, worker_class=worker_class, workers=int(workers), threads=int(threads or 1))
            with server:
                results = {mode: scenario_measure(server, args, mode=mode, clients=args.clients, key=key,
                                                  run=f"{run}s{spec.replace(':', '')}")
                           for mode in ("bare", "member")}
            figures["sweep"].append({"server": server.label, **results})
            sweep_rows.append([server.label] + [
                x for mode in ("bare", "member")
                for x in (f"{results[mode]['rps']:,.0f}", _ms(results[mode]["p50_ms"]), _ms(results[mode]["p99_ms"]))
            ] + [f"{results['member']['rps'] / results['bare']['rps']:.2f}"])
        print(table(["gunicorn", "bare req/s", "bare p50", "bare p99", "member req/s", "member p50", "member p99",
                     "x bare"], sweep_rows, title=f"**gunicorn configurations** ({args.clients} clients)"))
        print(flush=True)

    only = {mode for mode in args.only.split(",") if mode}
    modes = [mode for _name, mode, _allowed in SCENARIOS if not only or mode in only or mode == "bare"]
    server = Server(port=args.port, worker_class=args.worker_class, workers=args.workers, threads=args.threads)
    failures = []
    load_before = load_average()
    with server:
        for clients in [args.clients] + ([args.low_clients] if args.low_clients else []):
            results = {mode: scenario_measure(server, args, mode=mode, clients=clients, key=key, run=run)
                       for mode in modes}
            figures[f"clients_{clients}"] = results
            text, failed = results_table(results, {"label": server.label}, clients, targets=clients == args.clients)
            failures += failed
            print(text)
            print(flush=True)
    print(f"gunicorn: {server.label}; wrk {args.wrk_threads} threads, {args.warmup} s warm-up + {args.duration} s "
          f"per scenario; load average before / after: {load_before} / {load_average()}")
    print()
    print("Little's law: with N closed-loop clients, mean latency = N / throughput "
          f"(at {args.clients} clients and 1,000 req/s, 32 ms whatever the server does per request).")
    if failures:
        print("\n**Not met / failed:** " + "; ".join(failures))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2, default=str))
    return 1 if failures else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchRefused as refused:
        print(refused.message, file=sys.stderr)
        sys.exit(2)
