"""What every benchmark needs: Django set up against a dedicated PostgreSQL database, the machine's description,
timing of operations (sequential and threaded, one connection per thread) and the printed tables.

Benchmarks never run inside the test suite: they write real rows, take minutes and judge nothing by pass/fail.
"""
import os
import platform
import resource
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field


class BenchRefused(SystemExit):
    """The benchmark will not run here (wrong database, data it must not touch); exits with code 2."""

    def __init__(self, message: str):
        super().__init__(2)
        self.message = message


def django_setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    # The benchmark reads no request; DEBUG would keep every query in memory and distort the memory figures.
    os.environ["DEBUG"] = "0"
    import django

    django.setup()


def _maintenance_connect():
    """An autocommit connection to the server's `postgres` database, with the credentials of DATABASE_URL."""
    import psycopg
    from django.conf import settings

    db = settings.DATABASES["default"]
    params = {"dbname": "postgres", "autocommit": True}
    for key, name in (("HOST", "host"), ("PORT", "port"), ("USER", "user"), ("PASSWORD", "password")):
        if db.get(key):
            params[name] = str(db[key])
    return psycopg.connect(**params)


def bench_database_prepare(*, reset: bool) -> str:
    """Make sure the benchmark owns its database: create it when missing; refuse one that holds members unless
    `reset`, then drop and recreate it (only when its name says it is a benchmark database); migrate.

    Returns the database name. Touches no other database.
    """
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connections
    from psycopg import sql

    db = settings.DATABASES["default"]
    if db["ENGINE"] != "django.db.backends.postgresql":
        raise BenchRefused(
            "The ledger benchmark needs PostgreSQL: set DATABASE_URL, e.g. "
            "postgres://postgres@127.0.0.1:5432/loyalty_bench"
        )
    name = db["NAME"]
    with _maintenance_connect() as admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is not None
    has_members = False
    if exists:
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("SELECT to_regclass('members_member') IS NOT NULL")
            if cursor.fetchone()[0]:
                cursor.execute("SELECT EXISTS (SELECT 1 FROM members_member)")
                has_members = cursor.fetchone()[0]
        connections.close_all()
    if has_members and not reset:
        raise BenchRefused(
            f"Database {name!r} already has members. The benchmark writes millions of rows and needs an empty "
            f"database of its own; run again with --reset to drop and recreate {name!r}."
        )
    if exists and reset:
        if "bench" not in name:
            raise BenchRefused(
                f"--reset drops the database, and {name!r} does not look like a benchmark database "
                f"(its name has no 'bench'); point DATABASE_URL at one, e.g. .../loyalty_bench."
            )
        connections.close_all()
        with _maintenance_connect() as admin:
            admin.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(name)))
        exists = False
    if not exists:
        with _maintenance_connect() as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    call_command("migrate", verbosity=0, interactive=False)
    return name


def machine_description() -> dict[str, str]:
    from django import get_version
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        pg_version = cursor.fetchone()[0]
        cursor.execute(
            "SELECT name, setting, unit FROM pg_settings "
            "WHERE name IN ('shared_buffers', 'work_mem', 'synchronous_commit', 'max_connections') ORDER BY name"
        )
        pg_settings = ", ".join(f"{n}={_pg_setting(s, u)}" for n, s, u in cursor.fetchall())
    cpu_model = ""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            cpu_model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "")
    except OSError:
        pass
    memory = ""
    try:
        with open("/proc/meminfo") as meminfo:
            kib = int(next(line.split()[1] for line in meminfo if line.startswith("MemTotal")))
            memory = f"{kib / 1024 / 1024:.0f} GiB"
    except (OSError, StopIteration):
        pass
    host = connection.settings_dict.get("HOST") or "local socket"
    return {
        "CPUs": f"{os.cpu_count()} ({cpu_model})" if cpu_model else str(os.cpu_count()),
        "memory": memory,
        "OS": f"{platform.system()} {platform.release()}",
        "Python / Django": f"{platform.python_version()} / {get_version()}",
        "PostgreSQL": f"{pg_version} on {host}" + (" (same machine)" if host in ("127.0.0.1", "localhost") else ""),
        "PostgreSQL settings": pg_settings,
        "load average at start": load_average(),
    }


def load_average() -> str:
    """1/5/15-minute load averages: other work on the machine (a test run, a build) shows here and in the figures."""
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def _pg_setting(setting: str, unit: str | None) -> str:
    if unit == "8kB":
        return f"{int(setting) * 8 // 1024}MB"
    if unit == "kB":
        return f"{int(setting) // 1024}MB"
    return setting


# --- Timing ----------------------------------------------------------------------------------------------------------


@dataclass
class OpsResult:
    ops: int
    seconds: float
    latencies: list[float] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)

    @property
    def per_second(self) -> float:
        return self.ops / self.seconds if self.seconds else 0.0

    def percentile_ms(self, q: float) -> float:
        if len(self.latencies) < 2:
            return self.latencies[0] * 1000 if self.latencies else 0.0
        return statistics.quantiles(self.latencies, n=100, method="inclusive")[int(q) - 1] * 1000


def run_sequential(op, count: int) -> OpsResult:
    """op(i) for i in range(count), one after the other on this thread's connection."""
    latencies = []
    started = time.perf_counter()
    for i in range(count):
        t0 = time.perf_counter()
        op(i)
        latencies.append(time.perf_counter() - t0)
    return OpsResult(count, time.perf_counter() - started, latencies)


def run_threaded(make_worker, count: int, threads: int) -> OpsResult:
    """Split op indexes 0..count-1 over `threads` threads, each with its own database connection (opened before the
    clock starts, closed at the thread's end). `make_worker(thread_no)` runs on the thread and returns op(i), so a
    thread can load its own model instances. The clock runs from the common start to the last thread's end."""
    from django.db import connection

    barrier = threading.Barrier(threads + 1)
    latencies: list[list[float]] = [[] for _ in range(threads)]
    errors: list[BaseException] = []

    def thread_main(no: int) -> None:
        try:
            connection.ensure_connection()
            op = make_worker(no)
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()
            connection.close()
            return
        try:
            barrier.wait()
            mine = latencies[no]
            for i in range(no, count, threads):
                t0 = time.perf_counter()
                op(i)
                mine.append(time.perf_counter() - t0)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    workers = [threading.Thread(target=thread_main, args=(no,), name=f"bench-{no}") for no in range(threads)]
    for worker in workers:
        worker.start()
    try:
        barrier.wait()
    except threading.BrokenBarrierError:
        pass
    started = time.perf_counter()
    for worker in workers:
        worker.join()
    seconds = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"{len(errors)} thread(s) failed; first: {errors[0]!r}") from errors[0]
    return OpsResult(count, seconds, [x for per_thread in latencies for x in per_thread])


def max_rss_mib() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform != "darwin" else peak / 1024 / 1024


def current_rss_mib() -> float:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1024 / 1024
    except OSError:
        return 0.0


# --- Output ----------------------------------------------------------------------------------------------------------


def table(headers: list[str], rows: list[list], *, title: str = "") -> str:
    """A Markdown table (readable in a terminal, pasteable into docs/benchmarks.md); numbers right-aligned."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(row[i]) for row in cells)) if cells else len(h) for i, h in enumerate(headers)]
    numeric = [
        any(_looks_numeric(row[i]) for row in cells) and all(_looks_numeric(row[i]) or row[i] == "-" for row in cells)
        for i in range(len(headers))
    ]
    lines = []
    if title:
        lines += [title, ""]
    rules = [("-" * (w - 1) + ":") if n else "-" * w for w, n in zip(widths, numeric, strict=True)]
    lines.append("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |")
    lines.append("| " + " | ".join(rules) + " |")
    for row in cells:
        aligned = [c.rjust(w) if n else c.ljust(w) for c, w, n in zip(row, widths, numeric, strict=True)]
        lines.append("| " + " | ".join(aligned) + " |")
    return "\n".join(lines)


def _looks_numeric(text: str) -> bool:
    stripped = text.replace(",", "").replace(".", "").replace("-", "").replace("+", "").strip()
    return stripped.isdigit()


def log(message: str) -> None:
    """Progress goes to stderr, so stdout holds only the figures."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- Bulk loads ----------------------------------------------------------------------------------------------------


def table_definitions(cursor, name: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The table's unique and foreign-key constraints (name, definition) and its other secondary indexes (name,
    CREATE INDEX statement): what the load drops and recreates. The primary key and check constraints stay."""
    cursor.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = %s::regclass AND contype IN ('u', 'f') ORDER BY conname",
        [name],
    )
    constraints = cursor.fetchall()
    cursor.execute(
        """SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
           WHERE i.indrelid = %s::regclass AND NOT i.indisprimary
             AND i.indexrelid NOT IN (SELECT conindid FROM pg_constraint WHERE conrelid = %s::regclass)
           ORDER BY c.relname""",
        [name, name],
    )
    return constraints, cursor.fetchall()


def schema_strip(cursor, tables) -> dict:
    """Drop the tables' secondary indexes and unique/foreign-key constraints (a bulk load runs faster without them);
    returns their definitions for schema_restore."""
    saved = {}
    for name in tables:
        constraints, indexes = table_definitions(cursor, name)
        saved[name] = (constraints, indexes)
        for conname, _definition in constraints:
            cursor.execute(f'ALTER TABLE {name} DROP CONSTRAINT "{conname}"')
        for index_name, _definition in indexes:
            cursor.execute(f'DROP INDEX "{index_name}"')
    return saved


def schema_restore(cursor, saved: dict) -> None:
    """Recreate what schema_strip dropped (indexes first, then unique constraints, then foreign keys, which PostgreSQL
    validates in one pass each) and check the tables' definitions are back exactly as migrated."""
    for name, (constraints, indexes) in saved.items():
        for index_name, definition in indexes:
            log(f"load: index {index_name}")
            cursor.execute(definition)
        for kind in ("UNIQUE", "FOREIGN KEY"):
            for conname, definition in constraints:
                if definition.startswith(kind):
                    log(f"load: constraint {conname}")
                    cursor.execute(f'ALTER TABLE {name} ADD CONSTRAINT "{conname}" {definition}')
    for name, before in saved.items():
        after = table_definitions(cursor, name)
        if [list(x) for x in after] != [list(x) for x in before]:
            raise RuntimeError(f"{name}: indexes or constraints differ after the load:\n{before}\n{after}")
