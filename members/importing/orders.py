"""The order import engine: `orders_import()`, behind `manage.py import_orders` and the admin's order import.

Per-row ORM work cannot import millions of orders at speed, so nothing here touches a row in Python on PostgreSQL:

1. **Rows**, in blocks of a few MB cut at record boundaries, each block one transaction:
   - the block goes into a staging table: on PostgreSQL raw, by COPY (which also decodes GBK/GB18030), then parsed
     and validated by one INSERT ... SELECT (the same date pattern and rules as `reading.py`); on SQLite, and for a
     block COPY refuses (ragged rows, invalid bytes), loads with another row count than its line count (its `\\.`
     end-of-data marker, a quoted line break) or would read otherwise (a quote inside a cell), or a custom
     --date-format, parsed in Python by `reading.parse_block`, so every line ends stored or failed by its number;
   - set-based SQL then classifies the rows (bad, duplicate, conflict, new), creates the missing members, inserts
     the new orders, records the failed rows and the members touched, and adds the counts to the ImportRun.
   Blocks run on two connections at once on PostgreSQL. A killed import leaves only whole blocks; running the file
   again counts those rows as duplicates and completes the rest.
2. **Backfill**, one pass over the members the rows belong to, in batches of member ids, each batch one transaction
   with its members locked: purchase aggregates here, then the handlers named in LOYALTY_IMPORT_BACKFILL_HANDLERS
   (growth events at the orders' dates, points when asked, tiers as of now with reason `import`). Every step is
   idempotent by the same keys the live order path uses, so a re-run or a resumed run never counts an order twice.
   Nothing in it sends a message or queues a task: what happened in the past is not news to the member.

Orders come in as they were: `paid`, `refunded` (wholly) or `cancelled`. Refunded and cancelled orders are history
only: no growth, no points, no purchase counted.
"""
import contextvars
import functools
import hashlib
import re
import secrets
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import psycopg
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from django.db.models import F

from ..models import ImportRun, ImportRunMember
from ..rfm import rfm_refresh_after_import
from ..services import ORDER_CLOCK_SKEW, REFERRAL_ALPHABET, REFERRAL_CODE_LENGTH, configured_hooks, history_importing
from .edges import staged_rows_check_edges
from .reading import (
    FIELDS,
    ID_MAX_LENGTH,
    SHOWN_CHARACTERS,
    STATUSES,
    TEXT_MAX_LENGTHS,
    THOUSANDS_PATTERN,
    WHITESPACE,
    FileLayout,
    ImportFileError,
    inspect_file,
    parse_block,
    read_blocks,
)

BLOCK_BYTES = 8 << 20  # about 90,000 rows of a typical export: one transaction each
BACKFILL_BATCH = 10_000  # members per backfill transaction
ERRORS_KEPT_IN_REPORT = 100
# The date forms of reading.DATE_PATTERN as PostgreSQL checks them before a cast (no capture groups: matching with
# captures costs PostgreSQL ~50 µs a row, a plain match ~1 µs): date, optional time with valid hours, minutes and
# seconds, optional offset. Days past 28 are checked against the month.
SQL_DATE_PATTERN = (
    r"^[0-9]{4}-(0?[1-9]|1[0-2])-(0?[1-9]|[12][0-9]|3[01])"
    r"([T ]+([01]?[0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9]([.][0-9]{1,6})?)? *(Z|[+-][0-9]{2}:?[0-9]{2})?)?$"
)
SQL_OFFSET_PATTERN = r":[0-9]{2}([.][0-9]+)? *(Z|[+-][0-9]{2}:?[0-9]{2})$"
PG_ENCODINGS = {"utf-8": "UTF8", "utf-8-sig": "UTF8", "utf8": "UTF8", "gbk": "GBK", "gb18030": "GB18030",
                "gb2312": "GBK", "cp936": "GBK", "latin-1": "LATIN1", "iso-8859-1": "LATIN1", "cp1252": "WIN1252"}


class StrictStop(Exception):
    """--strict met a bad row: everything is rolled back."""

    def __init__(self, line: int, reason: str):
        super().__init__(f"line {line}: {reason}")
        self.line, self.reason = line, reason


class _DryRunRollback(Exception):
    pass


class _LostRace(Exception):
    """Some orders of a block were inserted by someone else between its classification and its insert."""


@dataclass
class ImportProgress:
    phase: str  # "rows" or "backfill"
    done: int  # rows read, or members backfilled
    total: int | None  # members to backfill (rows: unknown until the end)
    bytes_done: int
    bytes_total: int
    seconds: float


@dataclass
class ImportReport:
    run: ImportRun | None
    dry_run: bool = False
    rows_read: int = 0
    created: int = 0
    duplicates: int = 0
    conflicts: int = 0
    failed: int = 0
    members_created: int = 0
    backfilled_members: int = 0
    errors: list[tuple[int, str, str]] = field(default_factory=list)  # (line, reference, reason), the first ones
    rows_seconds: float = 0.0
    backfill_seconds: float = 0.0

    def add(self, batch: "ImportReport") -> None:
        for name in ("rows_read", "created", "duplicates", "conflicts", "failed", "members_created"):
            setattr(self, name, getattr(self, name) + getattr(batch, name))
        room = ERRORS_KEPT_IN_REPORT - len(self.errors)
        if room > 0:
            self.errors.extend(batch.errors[:room])


@dataclass(frozen=True)
class ImportBackfill:
    """One backfill batch, as the handlers receive it: the members of the run with lo <= id <= hi, locked."""

    run_id: int
    lo: int
    hi: int
    member_ids: list[int]
    award_points: bool
    now: datetime

    @property
    def scope_sql(self) -> str:
        """SQL for the batch's member ids; its parameters are `scope_params`."""
        return "SELECT member_id FROM members_importrunmember WHERE run_id = %s AND member_id >= %s AND member_id <= %s"

    @property
    def scope_params(self) -> list:
        return [self.run_id, self.lo, self.hi]


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as raw:
        while chunk := raw.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@history_importing()
def orders_import(
    *,
    path: str | Path,
    file_name: str | None = None,
    encoding: str = "auto",
    mapping: dict[str, str] | None = None,
    date_format: str | None = None,
    award_points: bool = False,
    dry_run: bool = False,
    strict: bool = False,
    user=None,
    source: str = ImportRun.Source.COMMAND,
    block_bytes: int = BLOCK_BYTES,
    workers: int | None = None,
    on_progress=None,
) -> ImportReport:
    """Import an order export (see the module docstring). Raises ImportFileError when the file as a whole cannot be
    read (nothing is written then) and StrictStop under `strict` at the first bad row (nothing is written but the
    ImportRun, marked failed). A dry run writes nothing at all, not even the ImportRun, and skips the backfill."""
    path = Path(path)
    layout = inspect_file(path, encoding=encoding, mapping=mapping)
    options = {"encoding": layout.encoding, "delimiter": layout.delimiter, "mapping": mapping or {},
               "date_format": date_format or "", "award_points": award_points, "strict": strict}
    run_fields = dict(kind=ImportRun.Kind.ORDERS, source=source, file_name=(file_name or path.name)[:255],
                      sha256=file_sha256(path), options=options, created_by=user)
    started = time.monotonic()
    context = _Context(layout=layout, date_format=date_format, started=started, on_progress=on_progress)

    if dry_run:
        report = ImportReport(run=None, dry_run=True)
        try:
            with transaction.atomic():
                run = ImportRun.objects.create(**run_fields)
                context.run_id = run.pk
                _rows_phase(path, context, report, block_bytes, workers=1)
                raise _DryRunRollback()
        except _DryRunRollback:
            pass
        report.rows_seconds = time.monotonic() - started
        return report

    run = ImportRun.objects.create(**run_fields)
    context.run_id = run.pk
    report = ImportReport(run=run)
    try:
        if strict:
            with transaction.atomic():
                _rows_phase(path, context, report, block_bytes, workers=1, strict=True)
        else:
            _rows_phase(path, context, report, block_bytes, workers=workers)
        report.rows_seconds = time.monotonic() - started
        ImportRun.objects.filter(pk=run.pk).update(status=ImportRun.Status.BACKFILLING)
        backfill_started = time.monotonic()
        report.backfilled_members = _backfill(run.pk, award_points=award_points, workers=workers,
                                              context=context)
        report.backfill_seconds = time.monotonic() - backfill_started
    except StrictStop as stop:
        ImportRun.objects.filter(pk=run.pk).update(
            status=ImportRun.Status.FAILED, error=f"--strict: stopped at {stop}; nothing was written.",
            failed=1, finished_at=timezone.now(),
        )
        run.refresh_from_db()
        raise
    except BaseException as error:
        ImportRun.objects.filter(pk=run.pk).update(
            status=ImportRun.Status.FAILED, error=f"{type(error).__name__}: {error}"[:2000], finished_at=timezone.now()
        )
        raise
    ImportRun.objects.filter(pk=run.pk).update(status=ImportRun.Status.COMPLETED, finished_at=timezone.now())
    run.refresh_from_db()
    # RFM quintiles are global: one refresh of everyone after the whole import (queued), not one per batch.
    rfm_refresh_after_import(run.pk)
    return report


# --- Rows ----------------------------------------------------------------------------------------------------------

@dataclass
class _Context:
    layout: FileLayout
    date_format: str | None
    started: float
    on_progress: object = None
    run_id: int | None = None


def _rows_phase(path, context: _Context, report: ImportReport, block_bytes: int, workers: int | None,
                strict: bool = False) -> None:
    if workers is None:
        workers = 2 if connection.vendor == "postgresql" and not connection.in_atomic_block else 1

    def progressed(bytes_done: int) -> None:
        if context.on_progress is not None:
            context.on_progress(ImportProgress("rows", report.rows_read, None, bytes_done, context.layout.size,
                                               time.monotonic() - context.started))

    blocks = read_blocks(path, context.layout, block_bytes)
    if workers <= 1:
        for first_line, end, block in blocks:
            report.add(_import_block(context, first_line, block, strict=strict))
            progressed(end)
        return

    def on_own_connection(first_line, block):
        try:
            return _import_block(context, first_line, block)
        finally:
            connection.close()

    # At most two blocks wait per worker: memory stays flat whatever the file's size.
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending = {}
        try:
            for first_line, end, block in blocks:
                while len(pending) >= workers * 2:
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        report.add(future.result())
                        progressed(pending.pop(future))
                pending[pool.submit(contextvars.copy_context().run, on_own_connection, first_line, block)] = end
            for future in list(pending):
                report.add(future.result())
                progressed(pending.pop(future))
        except BaseException:
            pool.shutdown(cancel_futures=True)
            raise


def _import_block(context: _Context, first_line: int, block: bytes, strict: bool = False) -> ImportReport:
    with transaction.atomic():
        _ensure_staging(len(context.layout.headers))
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM import_rows")
        if not _stage_by_copy(context, first_line, block):
            _stage_in_python(context, first_line, block)
        staged_rows_check_edges()
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                # Temporary tables get no statistics from autovacuum: without them the planner guesses a few rows
                # and joins 90,000 by nested loops. A small sample is enough for row counts (4x faster).
                cursor.execute("SET LOCAL default_statistics_target = 10")
                cursor.execute("ANALYZE import_rows")
                cursor.execute("RESET default_statistics_target")
        batch = _write_staged(context.run_id)
        if strict and (batch.failed or batch.conflicts):
            line, _reference, reason = batch.errors[0]
            raise StrictStop(line, reason)
        return batch


def _timestamp_type() -> str:
    return "timestamp with time zone" if connection.vendor == "postgresql" else "text"


def _ensure_staging(column_count: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            f"""CREATE TEMP TABLE IF NOT EXISTS import_rows (
                line bigint NOT NULL, order_id varchar(200), customer_id varchar(200), email varchar(254),
                phone varchar(32), name varchar(150), placed_at {_timestamp_type()}, amount decimal(12, 2),
                currency varchar(3), quantity integer, category varchar(64), channel varchar(32), status varchar(20),
                error text, outcome varchar(12), member_id bigint, first_line bigint)"""
        )
        cursor.execute("CREATE TEMP TABLE IF NOT EXISTS import_new_members (external_id varchar(200), referral_code varchar(16))")
        if connection.vendor == "postgresql":
            columns = ", ".join(f"c{index} text" for index in range(column_count))
            cursor.execute(
                f"CREATE TEMP TABLE IF NOT EXISTS import_raw_{column_count} "
                f"(seq bigint GENERATED BY DEFAULT AS IDENTITY, {columns})"
            )


def _stage_by_copy(context: _Context, first_line: int, block: bytes) -> bool:
    """PostgreSQL: COPY the raw block and parse it in SQL. False when the block must be parsed in Python instead."""
    layout = context.layout
    pg_encoding = PG_ENCODINGS.get(layout.encoding.lower())
    if connection.vendor != "postgresql" or context.date_format or pg_encoding is None:
        return False
    if b'"' in block and not _quotes_regular(block, layout):
        return False  # a quote where COPY and the Python reader would read it differently
    count = len(layout.headers)
    raw_table = f"import_raw_{count}"
    columns = ", ".join(f"c{index}" for index in range(count))
    delimiter = {"\t": "E'\\t'"}.get(layout.delimiter, f"'{layout.delimiter}'")
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"DELETE FROM {raw_table}")
            with cursor.cursor.copy(
                f"COPY {raw_table} ({columns}) FROM STDIN (FORMAT csv, DELIMITER {delimiter}, ENCODING '{pg_encoding}')"
            ) as copy:
                copy.write(block)
            records = cursor.cursor.rowcount
    except psycopg.Error:
        return False  # ragged or blank rows, a stray quote: the Python reader reports them row by row
    if records != block.count(b"\n") + (not block.endswith(b"\n")):
        # COPY loaded another number of rows than the block has lines: it stopped at its end-of-data marker (a line
        # `\.`), or a quoted cell holds a line break (the SQL numbering, one line per record, would be wrong). The
        # exact parser reads the block again, so every line is stored or reported.
        return False
    with connection.cursor() as cursor:
        currency = settings.LOYALTY_CURRENCY
        latest = timezone.now() + ORDER_CLOCK_SKEW
        zone = settings.TIME_ZONE
        cursor.execute(
            _parse_sql(layout), [zone, zone, first_line, currency, latest, currency, currency, currency, latest]
        )
    return True


@functools.cache
def _regular_csv(delimiter: str) -> re.Pattern:
    """Lines of cells that are either unquoted (no quote, no CR) or wholly quoted with inner quotes doubled, on one
    line each: the CSV that PostgreSQL's COPY and Python's csv module read alike. A quote elsewhere (`Ann"s`,
    `"ab"c`, `a""b`) opens a quoted cell for COPY but is a literal for the csv module. ~2 µs a row."""
    d = re.escape(delimiter)
    cell = rf'(?>"[^"\n]*+(?:""[^"\n]*+)*+"|[^"{d}\r\n]*+)'
    line = rf"{cell}(?:{d}{cell})*+\r?"
    return re.compile(rf"(?:{line}\n)*+(?:{line})?")


def _quotes_regular(block: bytes, layout: FileLayout) -> bool:
    # Decoded first: in GBK a trail byte can be a `|` delimiter. Invalid bytes make COPY fail anyway.
    return _regular_csv(layout.delimiter).fullmatch(block.decode(layout.encoding, errors="replace")) is not None


def _stage_in_python(context: _Context, first_line: int, block: bytes) -> None:
    ops = connection.ops
    rows = []
    for row in parse_block(block, first_line, context.layout, context.date_format):
        values = row.values
        placed_at = values.get("placed_at")
        amount = values.get("amount")
        error = "; ".join(row.errors) or None
        rows.append((
            row.line, values.get("order_id", "")[:200], values.get("customer_id", "")[:200], values.get("email", ""),
            values.get("phone", ""), values.get("name", ""),
            None if placed_at is None else ops.adapt_datetimefield_value(placed_at),
            None if amount is None else ops.adapt_decimalfield_value(amount, 12, 2),
            values.get("currency", "")[:3], values.get("quantity"), values.get("category", ""),
            values.get("channel", ""), values.get("status"), error, None if error is None else "failed",
        ))
    if not rows:
        return
    sql = ("INSERT INTO import_rows (line, order_id, customer_id, email, phone, name, placed_at, amount, currency, "
           "quantity, category, channel, status, error, outcome) VALUES "
           "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)")
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)


def _parse_sql(layout: FileLayout) -> str:
    """The block's raw cells -> typed, validated rows, with the reasons a row is refused, as `reading._parse_row`
    does in Python. Every cast is guarded first, so no cell can make the statement fail.

    Cost matters (a million rows a run): cells in the common shapes (`2024-03-05 14:30:00`, `20240305`, `199.90`) are
    recognised by `translate()` (digits -> 9) and cast directly; only the others go through patterns, which cost
    PostgreSQL several microseconds a row. Parameters: time zone, first line, currency x3, latest allowed date."""
    whitespace = f"'{WHITESPACE}'"  # what Python's str.strip() removes, so both paths trim and skip alike

    def cell(name: str) -> str:
        index = layout.columns.get(name)
        return "''" if index is None else f"btrim(coalesce(c{index}, ''), {whitespace})"

    def quoted(expr: str) -> str:
        # reading.shown() in SQL: the cell in quotes, at most SHOWN_CHARACTERS of it.
        quote = "''''"  # an SQL literal holding one single quote
        return (f"CASE WHEN length({expr}) <= {SHOWN_CHARACTERS} THEN {quote} || {expr} || {quote} "
                f"ELSE {quote} || left({expr}, {SHOWN_CHARACTERS}) || '…'' (' || length({expr}) || ' characters)' END")

    raw_table = f"import_raw_{len(layout.headers)}"
    status_whens = " ".join(
        f"WHEN '{alias}' THEN '{status}'" for status, aliases in STATUSES.items() for alias in aliases
    )
    lengths = TEXT_MAX_LENGTHS
    fast_shapes = "'9999-99-99 99:99:99', '9999-99-99', '9999-99-99 99:99', '9999-99-99T99:99:99'"
    fast_time_ok = """(length(q.iso_text) < 13 OR (CAST(substr(q.iso_text, 12, 2) AS int) <= 23
                       AND CAST(substr(q.iso_text, 15, 2) AS int) <= 59
                       AND (length(q.iso_text) < 19 OR CAST(substr(q.iso_text, 18, 2) AS int) <= 59)))"""
    # p: cells; q: date and amount normalised, the date's shape and day; q2: the date; v: typed values; e: errors.
    # Each layer is fenced (OFFSET 0): pulled up into one expression, shared parts would be computed once per use.
    return f"""
    INSERT INTO import_rows (line, order_id, customer_id, email, phone, name, placed_at, amount, currency, quantity,
                             category, channel, status, error, outcome)
    SELECT q2.line, left(q2.order_id, 200), left(q2.customer_id, 200), q2.email, q2.phone, q2.name, v.placed_at,
           v.amount, v.currency, v.quantity, q2.category, q2.channel, v.status, nullif(e.error, ''),
           CASE WHEN e.error <> '' THEN 'failed' END
    FROM (
        SELECT q.*,
            CASE
                WHEN q.day_number IS NULL OR q.day_number < 1 THEN NULL
                WHEN q.day_number > 28 AND (q.month_number NOT BETWEEN 1 AND 12 OR q.day_number > extract(day FROM
                        make_date(CAST(left(q.iso_text, 4) AS int), q.month_number, 1) + interval '1 month - 1 day'))
                    THEN NULL
                WHEN q.shape IN ({fast_shapes}) THEN
                    CASE WHEN q.month_number BETWEEN 1 AND 12 AND {fast_time_ok}
                         THEN CAST(q.iso_text AS timestamp) AT TIME ZONE %s END
                WHEN NOT q.iso_text ~ '{SQL_DATE_PATTERN}' THEN NULL
                WHEN q.iso_text ~ '{SQL_OFFSET_PATTERN}' THEN CAST(q.iso_text AS timestamp with time zone)
                ELSE CAST(q.iso_text AS timestamp) AT TIME ZONE %s
            END AS placed_at_value
        FROM (
            SELECT n.*,
                CASE WHEN n.shape IN ({fast_shapes}) THEN CAST(substr(n.iso_text, 9, 2) AS int)
                     WHEN n.iso_text ~ '^[0-9]{{4}}-[0-9]{{1,2}}-[0-9]'
                     THEN CAST(substring(split_part(n.iso_text, '-', 3) FROM '^[0-9]+') AS int) END AS day_number,
                CASE WHEN n.shape IN ({fast_shapes}) THEN CAST(substr(n.iso_text, 6, 2) AS int)
                     WHEN n.iso_text ~ '^[0-9]{{4}}-[0-9]{{1,2}}-'
                     THEN CAST(split_part(n.iso_text, '-', 2) AS int) END AS month_number
            FROM (
                SELECT p.*, translate(p.iso_text, '0123456789', '9999999999') AS shape,
                    -- Plain numbers take the cheap path; symbols and currency words the pattern.
                    -- A comma only separates thousands ('x' marks a bad amount, e.g. the decimal comma of 12,50).
                    CASE WHEN translate(p.amount_text, '0123456789,', '') IN ('', '.')
                         THEN CASE WHEN position(',' IN p.amount_text) = 0 THEN p.amount_text
                                   WHEN p.amount_text ~ '{THOUSANDS_PATTERN}' THEN replace(p.amount_text, ',', '')
                                   ELSE 'x' END
                         ELSE (SELECT CASE WHEN position(',' IN z.s) = 0 AND position('，' IN z.s) = 0 THEN z.s
                                           WHEN z.s ~ '{THOUSANDS_PATTERN}' THEN translate(z.s, ',，', '')
                                           ELSE 'x' END
                               FROM (SELECT regexp_replace(p.amount_text, '[¥￥$€£[:space:]]|CNY|RMB|USD|EUR|元', '',
                                                           'gi') AS s) z)
                    END AS amount_clean
                FROM (
                    SELECT r.*,
                        CASE WHEN length(r.date_text) = 8 AND translate(r.date_text, '0123456789', '') = ''
                             THEN substr(r.date_text, 1, 4) || '-' || substr(r.date_text, 5, 2) || '-'
                                  || substr(r.date_text, 7, 2)
                             ELSE replace(r.date_text, '/', '-') END AS iso_text
                    FROM (
                        SELECT %s + seq - (SELECT min(seq) FROM {raw_table}) AS line,
                            {cell("order_id")} AS order_id, {cell("customer_id")} AS customer_id,
                            left({cell("email")}, {lengths["email"]}) AS email,
                            left({cell("phone")}, {lengths["phone"]}) AS phone,
                            left({cell("name")}, {lengths["name"]}) AS name,
                            {cell("placed_at")} AS date_text,
                            {cell("amount")} AS amount_text,
                            upper(CASE WHEN {cell("currency")} = '' THEN %s ELSE {cell("currency")} END) AS currency_text,
                            CASE WHEN {cell("quantity")} = '' THEN '1' ELSE {cell("quantity")} END AS quantity_text,
                            left({cell("category")}, {lengths["category"]}) AS category,
                            left({cell("channel")}, {lengths["channel"]}) AS channel,
                            {cell("status")} AS status_text
                        FROM {raw_table}
                        WHERE {" OR ".join(f"btrim(coalesce(c{i}, ''), {whitespace}) <> ''"
                                           for i in range(len(layout.headers)))}
                        OFFSET 0
                    ) r
                    OFFSET 0
                ) p
                OFFSET 0
            ) n
            OFFSET 0
        ) q
        OFFSET 0
    ) q2
    CROSS JOIN LATERAL (
        SELECT
            q2.placed_at_value AS placed_at,
            CASE WHEN q2.amount_clean <> '' AND q2.amount_clean <> '.'
                      AND translate(q2.amount_clean, '0123456789', '') IN ('', '.')
                      AND position('.' IN q2.amount_clean || '.') <= 11
                 THEN round(CAST(q2.amount_clean AS numeric), 2) END AS amount,
            left(q2.currency_text, 3) AS currency,
            CASE WHEN q2.quantity_text = '1' THEN 1
                 WHEN translate(q2.quantity_text, '0123456789', '') = '' AND length(q2.quantity_text) <= 9
                      AND CAST(q2.quantity_text AS int) >= 1 THEN CAST(q2.quantity_text AS int) END AS quantity,
            CASE WHEN q2.status_text = '' THEN 'paid' ELSE CASE lower(q2.status_text) {status_whens} END END AS status
        OFFSET 0
    ) v
    CROSS JOIN LATERAL (
        SELECT CASE
            WHEN v.placed_at IS NOT NULL AND v.placed_at <= %s AND v.amount IS NOT NULL AND v.status IS NOT NULL
                 AND v.quantity IS NOT NULL AND q2.currency_text = %s AND q2.order_id <> '' AND q2.customer_id <> ''
                 AND length(q2.order_id) <= {ID_MAX_LENGTH} AND length(q2.customer_id) <= {ID_MAX_LENGTH} THEN ''
            ELSE concat_ws('; ',
                CASE WHEN q2.order_id = '' THEN 'missing order_id'
                     WHEN length(q2.order_id) > {ID_MAX_LENGTH} THEN 'order_id longer than {ID_MAX_LENGTH} characters' END,
                CASE WHEN q2.customer_id = '' THEN 'missing customer_id'
                     WHEN length(q2.customer_id) > {ID_MAX_LENGTH}
                     THEN 'customer_id longer than {ID_MAX_LENGTH} characters' END,
                CASE WHEN q2.date_text = '' THEN 'missing date'
                     WHEN v.placed_at IS NULL THEN 'bad date ' || {quoted("q2.date_text")} END,
                CASE WHEN v.amount IS NOT NULL THEN NULL
                     WHEN q2.amount_clean ~ '^-[0-9.]+$' THEN 'negative amount ' || {quoted("q2.amount_text")}
                     WHEN q2.amount_clean ~ '^[0-9]{{11,}}([.][0-9]*)?$'
                     THEN 'amount too large ' || {quoted("q2.amount_text")}
                     ELSE 'bad amount ' || {quoted("q2.amount_text")} END,
                CASE WHEN v.status IS NULL THEN 'unknown status ' || {quoted("q2.status_text")} END,
                CASE WHEN v.quantity IS NULL THEN 'bad quantity ' || {quoted("q2.quantity_text")} END,
                CASE WHEN q2.currency_text <> %s THEN 'currency ' || left(q2.currency_text, {SHOWN_CHARACTERS})
                     || CASE WHEN length(q2.currency_text) > {SHOWN_CHARACTERS} THEN '…' ELSE '' END
                     || ' is not ' || %s END,
                CASE WHEN v.placed_at > %s THEN 'placed_at is in the future' END)
        END AS error
    ) e
    """


def _write_staged(run_id: int) -> ImportReport:
    """The staged rows -> duplicates, conflicts, new members, new orders, failed rows, counts. Set-based."""
    vendor = connection.vendor
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    same = """m.external_id = import_rows.customer_id AND o.placed_at = import_rows.placed_at
              AND o.amount = import_rows.amount AND o.status = import_rows.status
              AND o.currency = import_rows.currency"""
    differences = """'order ' || import_rows.order_id || ' exists with another ' || CASE
        WHEN m.external_id <> import_rows.customer_id THEN 'customer (' || m.external_id || ')'
        WHEN o.amount <> import_rows.amount THEN 'amount (' || CAST(o.amount AS varchar(20)) || ')'
        WHEN o.placed_at <> import_rows.placed_at THEN 'date'
        WHEN o.status <> import_rows.status THEN 'status (' || o.status || ')'
        ELSE 'currency' END || '; not overwritten'"""
    report = ImportReport(run=None)
    with connection.cursor() as cursor:
        # The same order id again in this block: the first row counts, later ones are duplicates or conflicts.
        cursor.execute(
            """UPDATE import_rows SET first_line = f.first_line
               FROM (SELECT order_id, MIN(line) AS first_line FROM import_rows WHERE outcome IS NULL
                     GROUP BY order_id HAVING COUNT(*) > 1) f
               WHERE import_rows.order_id = f.order_id AND import_rows.outcome IS NULL"""
        )
        cursor.execute(
            """UPDATE import_rows SET
                   outcome = CASE WHEN f.customer_id = import_rows.customer_id AND f.placed_at = import_rows.placed_at
                                   AND f.amount = import_rows.amount AND f.status = import_rows.status
                                  THEN 'duplicate' ELSE 'conflict' END,
                   error = CASE WHEN f.customer_id = import_rows.customer_id AND f.placed_at = import_rows.placed_at
                                 AND f.amount = import_rows.amount AND f.status = import_rows.status THEN NULL
                                ELSE 'order ' || import_rows.order_id || ' appears on line '
                                     || CAST(f.line AS varchar(20)) || ' with other data' END
               FROM import_rows f
               WHERE f.line = import_rows.first_line AND import_rows.line > import_rows.first_line"""
        )
        _classify_existing(cursor, same, differences)
        report.members_created = _create_members(cursor, now)
        columns = """INSERT INTO members_order (order_id, member_id, placed_at, amount, currency, quantity, category,
                         channel, status, refunded_amount, points_earned, growth_earned, points_used, created_at,
                         import_run_id)"""
        # PostgreSQL, the common case: every row still unclassified has its member now and no one else inserted its
        # order meanwhile, so one INSERT joining the members writes them all, and "unclassified" means "created"
        # from here on (no pass over the staged rows to say so). When the count differs, the block falls back to
        # marking rows one step at a time.
        created_unmarked = False
        if vendor == "postgresql":
            cursor.execute("SELECT count(*) FROM import_rows WHERE outcome IS NULL")
            candidates = cursor.fetchone()[0]
            try:
                with transaction.atomic():
                    cursor.execute(
                        f"""{columns}
                            SELECT r.order_id, m.id, r.placed_at, r.amount, r.currency, r.quantity, r.category,
                                   r.channel, r.status, CASE WHEN r.status = 'refunded' THEN r.amount ELSE 0 END,
                                   0, 0, 0, %s, %s
                            FROM import_rows r JOIN members_member m ON m.external_id = r.customer_id
                            WHERE r.outcome IS NULL
                            ORDER BY r.order_id
                            ON CONFLICT (order_id) DO NOTHING""",
                        [now, run_id],
                    )
                    if cursor.rowcount != candidates:
                        raise _LostRace()
                created_unmarked = True
            except _LostRace:
                pass
        if not created_unmarked:
            cursor.execute(
                """UPDATE import_rows SET member_id = m.id FROM members_member m
                   WHERE m.external_id = import_rows.customer_id AND import_rows.outcome IS NULL"""
            )
            insert = f"""{columns}
                         SELECT order_id, member_id, placed_at, amount, currency, quantity, category, channel, status,
                                CASE WHEN status = 'refunded' THEN amount ELSE 0 END, 0, 0, 0, %s, %s
                         FROM import_rows WHERE outcome IS NULL AND member_id IS NOT NULL
                         ORDER BY order_id
                         ON CONFLICT (order_id) DO NOTHING"""
            if vendor == "postgresql":
                # A concurrent block or a storefront post inserted some of these orders first (rare): RETURNING
                # tells the rows this block created.
                cursor.execute(
                    f"""WITH created AS ({insert} RETURNING order_id)
                        UPDATE import_rows SET outcome = 'created' FROM created
                        WHERE import_rows.order_id = created.order_id AND import_rows.outcome IS NULL""",
                    [now, run_id],
                )
            else:  # one writer at a time: every row still unclassified is created
                cursor.execute(insert, [now, run_id])
                cursor.execute(
                    "UPDATE import_rows SET outcome = 'created' WHERE outcome IS NULL AND member_id IS NOT NULL"
                )
            _classify_existing(cursor, same, differences)  # lost a race: now it exists
            cursor.execute(
                """UPDATE import_rows SET outcome = 'failed', error = 'customer could not be created'
                   WHERE outcome IS NULL"""
            )
        created = "outcome IS NULL" if created_unmarked else "outcome = 'created'"
        cursor.execute(
            f"""INSERT INTO members_importrunmember (run_id, member_id)
                SELECT DISTINCT %s, m.id FROM import_rows r JOIN members_member m ON m.external_id = r.customer_id
                WHERE r.{created} OR r.outcome = 'duplicate'
                ORDER BY 2
                ON CONFLICT DO NOTHING""",
            [run_id],
        )
        cursor.execute(
            """INSERT INTO members_importrowerror (run_id, line, reference, reason, is_conflict)
               SELECT %s, line, CASE WHEN order_id <> '' THEN substr(order_id, 1, 200) ELSE substr(customer_id, 1, 200) END,
                      error, outcome = 'conflict'
               FROM import_rows WHERE error IS NOT NULL""",
            [run_id],
        )
        cursor.execute("SELECT COALESCE(outcome, 'created'), COUNT(*) FROM import_rows GROUP BY 1")
        counts = dict(cursor.fetchall())
        report.rows_read = sum(counts.values())
        report.created = counts.get("created", 0)
        report.duplicates = counts.get("duplicate", 0)
        report.conflicts = counts.get("conflict", 0)
        report.failed = counts.get("failed", 0)
        if report.failed or report.conflicts:
            cursor.execute(
                f"""SELECT line, CASE WHEN order_id <> '' THEN order_id ELSE customer_id END, error FROM import_rows
                    WHERE error IS NOT NULL ORDER BY line LIMIT {ERRORS_KEPT_IN_REPORT}"""
            )
            report.errors = [(int(line), reference or "", reason) for line, reference, reason in cursor.fetchall()]
        cursor.execute(
            """UPDATE members_importrun SET rows_read = rows_read + %s, created = created + %s,
                   duplicates = duplicates + %s, conflicts = conflicts + %s, failed = failed + %s,
                   members_created = members_created + %s
               WHERE id = %s""",
            [report.rows_read, report.created, report.duplicates, report.conflicts, report.failed,
             report.members_created, run_id],
        )
    return report


def _classify_existing(cursor, same: str, differences: str) -> None:
    cursor.execute(
        f"""UPDATE import_rows SET
               outcome = CASE WHEN {same} THEN 'duplicate' ELSE 'conflict' END,
               error = CASE WHEN {same} THEN NULL ELSE {differences} END,
               member_id = CASE WHEN {same} THEN m.id END
           FROM members_order o JOIN members_member m ON m.id = o.member_id
           WHERE o.order_id = import_rows.order_id AND import_rows.outcome IS NULL"""
    )


def _new_referral_code() -> str:
    return "".join(secrets.choice(REFERRAL_ALPHABET) for _ in range(REFERRAL_CODE_LENGTH))


def _create_members(cursor, now) -> int:
    """Create the members the block's rows name and we do not know yet, with the email, phone and name of their
    rows and their first order's date as the join date (a member cannot have ordered before joining). Codes that
    collide with an existing referral code are drawn again."""
    created = 0
    for _attempt in range(5):
        cursor.execute(
            """SELECT DISTINCT r.customer_id FROM import_rows r
               WHERE r.outcome IS NULL
                 AND NOT EXISTS (SELECT 1 FROM members_member m WHERE m.external_id = r.customer_id)"""
        )
        missing = [customer_id for (customer_id,) in cursor.fetchall()]
        if not missing:
            return created
        cursor.execute("DELETE FROM import_new_members")
        cursor.executemany(
            "INSERT INTO import_new_members (external_id, referral_code) VALUES (%s, %s)",
            [(customer_id, _new_referral_code()) for customer_id in missing],
        )
        cursor.execute(
            """INSERT INTO members_member (external_id, referral_code, email, phone, name, region, joined_at,
                   email_opt_in, sms_opt_in, growth_value, points_balance, points_pending, points_debt,
                   lifetime_spend, order_count, created_at, updated_at, blocked_reason, is_blocked)
               SELECT n.external_id, n.referral_code, p.email, p.phone, p.name, '', p.joined_at, FALSE, FALSE,
                      0, 0, 0, 0, 0, 0, %s, %s, '', FALSE
               FROM import_new_members n
               JOIN (SELECT customer_id, MAX(email) AS email, MAX(phone) AS phone, MAX(name) AS name,
                            MIN(placed_at) AS joined_at
                     FROM import_rows WHERE outcome IS NULL GROUP BY customer_id) p ON p.customer_id = n.external_id
               WHERE TRUE
               ORDER BY n.external_id
               ON CONFLICT DO NOTHING""",
            [now, now],
        )
        created += cursor.rowcount
    raise RuntimeError("could not create the import's members")  # five collisions in a row: not chance


# --- Backfill ------------------------------------------------------------------------------------------------------

def _backfill(run_id: int, *, award_points: bool, workers: int | None, context: _Context | None = None) -> int:
    """Bring the run's members up to date, in batches of member ids, each one transaction with its members locked."""
    if workers is None:
        workers = 2 if connection.vendor == "postgresql" and not connection.in_atomic_block else 1
    ids = ImportRunMember.objects.filter(run_id=run_id).order_by("member_id").values_list("member_id", flat=True)
    total = ids.count()
    run = ImportRun.objects.get(pk=run_id)
    statistics_refresh("members_member", run.members_created)
    statistics_refresh("members_order", run.created)
    statistics_refresh("members_importrunmember", total)
    now = timezone.now()
    batches = []
    after = 0
    while True:
        batch = list(ids.filter(member_id__gt=after)[:BACKFILL_BATCH])
        if not batch:
            break
        batches.append(batch)
        after = batch[-1]

    def run_batch(member_ids: list[int]) -> int:
        with transaction.atomic():
            backfill = ImportBackfill(run_id=run_id, lo=member_ids[0], hi=member_ids[-1], member_ids=member_ids,
                                      award_points=award_points, now=now)
            _backfill_batch(backfill)
            ImportRun.objects.filter(pk=run_id).update(backfilled_members=F("backfilled_members") + len(member_ids))
            return len(member_ids)

    def on_own_connection(member_ids):
        try:
            return run_batch(member_ids)
        finally:
            connection.close()

    done = 0

    def progressed(count: int) -> None:
        nonlocal done
        done += count
        if context is not None and context.on_progress is not None:
            context.on_progress(ImportProgress("backfill", done, total, context.layout.size, context.layout.size,
                                               time.monotonic() - context.started))

    if workers <= 1 or len(batches) <= 1:
        for member_ids in batches:
            progressed(run_batch(member_ids))
        return done
    with ThreadPoolExecutor(max_workers=workers) as pool:
        # Each batch runs in a copy of this thread's context (history_importing() holds there too).
        jobs = [(contextvars.copy_context(), member_ids) for member_ids in batches]
        for count in pool.map(lambda job: job[0].run(on_own_connection, job[1]), jobs):
            progressed(count)
    return done


def statistics_refresh(table: str, added_rows: int) -> None:
    """ANALYZE `table` (PostgreSQL) when it has just grown by a fifth or more. Autovacuum's statistics lag a bulk
    load by minutes; on a table they still call empty, the planner joins the thousands of rows a batch reads by
    nested loops (seen: the window sums of 5,000 members took 7 s instead of 20 ms). Rows the transaction itself
    inserted count; the lock ANALYZE takes is held to the end of the transaction, so concurrent batches meet here
    in turn, only on the few batches that grow a table that much."""
    if connection.vendor != "postgresql" or added_rows <= 0:
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE oid = %s::regclass", [table])
        known = max(cursor.fetchone()[0], 0)  # -1: never analyzed
        if added_rows >= known / 5:
            cursor.execute(f"ANALYZE {table}")


def _backfill_batch(backfill: ImportBackfill) -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT count(*) FROM (SELECT 1 FROM members_member WHERE id IN ({backfill.scope_sql}) "
                f"ORDER BY id FOR NO KEY UPDATE) locked",
                backfill.scope_params,
            )
    member_aggregates_refresh(backfill)
    for handler in configured_hooks("LOYALTY_IMPORT_BACKFILL_HANDLERS"):
        handler(backfill)


def member_aggregates_refresh(backfill: ImportBackfill) -> None:
    """Lifetime spend (net of refunds), orders (wholly refunded and cancelled ones not counted), first and last
    order, recomputed from all the members' orders, as the live order and refund paths keep them; the join date
    moves back to the first order when that is earlier."""
    now = connection.ops.adapt_datetimefield_value(backfill.now)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""UPDATE members_member SET
                    lifetime_spend = a.spend, order_count = a.orders, first_order_at = a.first_at,
                    last_order_at = a.last_at,
                    joined_at = CASE WHEN a.first_at < members_member.joined_at THEN a.first_at
                                     ELSE members_member.joined_at END,
                    updated_at = %s
                FROM (
                    SELECT member_id,
                           COALESCE(SUM(CASE WHEN status <> 'cancelled' THEN amount - refunded_amount END), 0) AS spend,
                           COUNT(CASE WHEN status IN ('paid', 'partially_refunded') THEN 1 END) AS orders,
                           MIN(CASE WHEN status <> 'cancelled' THEN placed_at END) AS first_at,
                           MAX(CASE WHEN status <> 'cancelled' THEN placed_at END) AS last_at
                    FROM members_order WHERE member_id IN ({backfill.scope_sql}) GROUP BY member_id
                ) a
                WHERE members_member.id = a.member_id AND members_member.id >= %s AND members_member.id <= %s""",
            [now, *backfill.scope_params, backfill.lo, backfill.hi],
        )


__all__ = ["FIELDS", "ImportBackfill", "ImportFileError", "ImportProgress", "ImportReport", "StrictStop",
           "orders_import", "statistics_refresh"]
