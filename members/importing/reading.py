"""Reading the order files people really have: the first piece of the historical import.

`read_orders(path, ...)` streams a CSV/TSV export row by row (memory stays flat whatever the size) and yields
`ImportRow`s: either the order's fields, parsed, or the reasons the line cannot be imported, with its line number.
It detects the encoding (UTF-8, UTF-8 with BOM, GBK/GB18030 or cp1252, charset-normalizer judging), sniffs the delimiter, maps headers to our fields
(English and Chinese names, `--map SRC=FIELD` for the rest) and parses dates and amounts as shops export them.
Writing the orders (set-based, in batches) builds on this.
"""
import codecs
import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from datetime import timezone as dt_timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path

from charset_normalizer.md import mess_ratio
from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext as _

from ..services import ORDER_CLOCK_SKEW

FIELDS = (
    "order_id", "customer_id", "email", "phone", "name", "placed_at", "amount", "currency", "quantity", "category",
    "channel", "status",
)
REQUIRED = ("order_id", "customer_id", "placed_at", "amount")

# Header names seen in shop exports, compared after lower-casing and dropping spaces, underscores, dashes and dots.
HEADER_NAMES = {
    "order_id": ["orderid", "order", "orderno", "ordernumber", "ordercode", "tradeid", "订单号", "订单编号", "订单id"],
    "customer_id": ["customerid", "customer", "memberid", "userid", "buyerid", "clientid", "客户id", "客户编号",
                    "会员id", "会员编号", "用户id", "买家id"],
    "email": ["email", "emailaddress", "mail", "邮箱", "电子邮箱"],
    "phone": ["phone", "mobile", "phonenumber", "mobilephone", "tel", "手机", "手机号", "手机号码", "电话", "联系电话"],
    "name": ["name", "customername", "fullname", "buyername", "姓名", "客户姓名", "会员姓名", "收货人"],
    "placed_at": ["placedat", "date", "orderdate", "ordertime", "createdat", "created", "paidat", "paymenttime",
                  "下单时间", "订单时间", "日期", "支付时间", "付款时间", "创建时间"],
    "amount": ["amount", "total", "ordertotal", "paid", "paidamount", "grandtotal", "金额", "实付金额", "订单金额",
               "支付金额", "实付款", "付款金额"],
    "currency": ["currency", "币种", "货币"],
    "quantity": ["quantity", "qty", "items", "数量", "件数"],
    "category": ["category", "类目", "品类", "分类"],
    "channel": ["channel", "source", "渠道", "来源"],
    "status": ["status", "orderstatus", "state", "状态", "订单状态"],
}
_HEADER_INDEX = {alias: name for name, aliases in HEADER_NAMES.items() for alias in aliases}

STATUSES = {
    "paid": ["paid", "completed", "complete", "success", "succeeded", "shipped", "delivered", "已支付", "已付款",
             "已完成", "交易成功", "已发货"],
    "refunded": ["refunded", "returned", "已退款", "退款成功", "已退货"],
    "cancelled": ["cancelled", "canceled", "void", "closed", "已取消", "交易关闭", "已关闭"],
}
_STATUS_INDEX = {alias: status for status, aliases in STATUSES.items() for alias in aliases}

_CURRENCY_NOISE = re.compile(r"[¥￥$€£\s]|CNY|RMB|USD|EUR|元", re.IGNORECASE)
THOUSANDS_PATTERN = r"^-?[0-9]{1,3}([,，][0-9]{3})+([.][0-9]*)?$"  # PostgreSQL's import path checks the same
_THOUSANDS_RE = re.compile(THOUSANDS_PATTERN)
SAMPLE_BYTES = 64 * 1024
ID_MAX_LENGTH = 64
AMOUNT_LIMIT = Decimal("10000000000")  # Order.amount holds 12 digits, 2 of them cents
# Longer profile texts are cut to the column's size rather than failing the order.
TEXT_MAX_LENGTHS = {"email": 254, "phone": 32, "name": 150, "category": 64, "channel": 32}
# A row error quotes at most this much of a cell: a megabyte cell must not become a megabyte reason (report, console).
SHOWN_CHARACTERS = 200
# What str.strip() removes, for SQL's btrim() to trim and call blank the same cells (full-width space included).
WHITESPACE = "".join(chr(code) for code in range(0x3001) if chr(code).isspace())
_SEPARATORS = '\n\r",;\t|'  # bytes the reader cuts lines and cells on, before decoding


def headers_shown(headers: list[str]) -> str:
    """The header row as a file error names it: at most SHOWN_CHARACTERS."""
    text = ", ".join(headers)
    return text if len(text) <= SHOWN_CHARACTERS else text[:SHOWN_CHARACTERS] + "…"


def shown(text: str) -> str:
    """A cell as a row error quotes it: repr(), cut to SHOWN_CHARACTERS with its length said."""
    if len(text) <= SHOWN_CHARACTERS:
        return repr(text)
    return f"{text[:SHOWN_CHARACTERS] + '…'!r} ({len(text)} characters)"


class ImportFileError(ValueError):
    """The file as a whole cannot be read (encoding, headers): nothing is imported."""


@dataclass
class ImportRow:
    line: int
    values: dict = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def _normalise_header(header: str) -> str:
    return re.sub(r"[\s_\-.()（）]", "", header.strip().lstrip("\ufeff")).lower()


def detect_encoding(sample: bytes) -> str:
    """utf-8-sig for a BOM, utf-8 when the sample decodes as UTF-8, else GB18030 (a superset of GBK and GB2312) or
    cp1252 (Western Europe's Windows code page, Latin-1's letters included), as charset-normalizer judges.

    A few invalid bytes do not decide for the whole file (a UTF-8 file with one stray byte read as GB18030 would
    import as mojibake without a word): text with at least as many valid non-ASCII characters as invalid sequences
    is UTF-8 (GBK text read as UTF-8 is runs of invalid bytes, the odd pair that happens to be valid UTF-8 always
    between two of them), and so is text with no more invalid sequences under UTF-8 than under GB18030, when they
    are few: its lines holding the invalid bytes then fail one by one (`read_records`). Otherwise the bytes are
    Chinese or Western, and almost any byte pair is valid GB18030 ("Müller" in cp1252 decodes, without an error, as
    "M黮ler"): charset-normalizer's measure of how messy each reading is decides (GB18030 on a tie). A sample that
    reads as neither, and is garbage under both UTF-8 and GB18030, is refused."""
    if sample.startswith(b"\xef\xbb\xbf"):
        return "utf-8-sig"
    whole = sample[:-3] if len(sample) >= SAMPLE_BYTES else sample  # the sample may cut a character in two
    utf8 = whole.decode("utf-8", errors="surrogateescape")
    utf8_invalid = len(_INVALID_SEQUENCE.findall(utf8))
    if not utf8_invalid or utf8_invalid <= len(_NON_ASCII.findall(utf8)) - len(_INVALID_BYTE.findall(utf8)):
        return "utf-8"
    gb18030_invalid = len(_INVALID_SEQUENCE.findall(whole.decode("gb18030", errors="surrogateescape")))
    few = max(len(whole) // 100, 8)
    if utf8_invalid <= min(gb18030_invalid, few):
        return "utf-8"
    judged = _judged_encoding(whole)
    if judged is not None:
        return judged
    if min(utf8_invalid, gb18030_invalid) > few:
        raise ImportFileError(_("The file is neither UTF-8 nor GBK/GB18030; give --encoding."))
    return "utf-8" if utf8_invalid <= gb18030_invalid else "gb18030"


# The encodings charset-normalizer judges between for a file that is not UTF-8, the first winning a tie, and the
# mess ratio (charset_normalizer.md.mess_ratio: 0 for clean text) above which a reading is not text at all.
JUDGED_ENCODINGS = ("gb18030", "cp1252")
JUDGED_MESS_MAX = 0.2


def _judged_encoding(sample: bytes) -> str | None:
    """GB18030 or cp1252, whichever reads as the less messy text (invalid bytes shown as U+FFFD count as mess), or
    None when neither reads as text."""
    mess = {encoding: mess_ratio(sample.decode(encoding, errors="replace"), maximum_threshold=1.0)
            for encoding in JUDGED_ENCODINGS}
    best = min(JUDGED_ENCODINGS, key=lambda encoding: (mess[encoding], JUDGED_ENCODINGS.index(encoding)))
    return best if mess[best] < JUDGED_MESS_MAX else None


# errors="surrogateescape" decodes a byte that is not text as one of these surrogates, which no valid text holds.
_INVALID_BYTE = re.compile("[\udc80-\udcff]")
_INVALID_SEQUENCE = re.compile("[\udc80-\udcff]+")
_NON_ASCII = re.compile("[^\x00-\x7f]")


def map_headers(
    headers: list[str],
    overrides: dict[str, str] | None = None,
    *,
    fields: tuple[str, ...] = FIELDS,
    required: tuple[str, ...] = REQUIRED,
    header_names: dict[str, list[str]] | None = None,
) -> dict[str, int]:
    """Our field -> column index. `overrides` maps a source header to our field (--map SRC=FIELD) and wins.

    `fields`, `required` and `header_names` (field -> header aliases) default to the order file's; other imports
    (opening balances) pass their own."""
    header_index = _HEADER_INDEX if header_names is None else {
        _normalise_header(alias): name for name, aliases in header_names.items() for alias in aliases
    }
    overrides = {_normalise_header(src): target for src, target in (overrides or {}).items()}
    for target in overrides.values():
        if target not in fields:
            raise ImportFileError(_("--map: unknown field %(target)r; fields are %(fields)s.")
                                  % {"target": target, "fields": ", ".join(fields)})
    mapping: dict[str, int] = {}
    candidates: dict[str, list[str]] = {}
    for index, header in enumerate(headers):
        key = _normalise_header(header)
        target = overrides.get(key) or header_index.get(key)
        if target is None:
            continue
        if target in mapping and key not in overrides:
            candidates.setdefault(target, [headers[mapping[target]]]).append(header)
            continue
        mapping[target] = index
    for target, headers_seen in candidates.items():
        if not any(_normalise_header(h) in overrides for h in headers_seen):
            raise ImportFileError(
                _("Columns %(columns)s could all be %(target)s; choose one with --map '%(first)s=%(target)s'.")
                % {"columns": ", ".join(repr(h) for h in headers_seen), "target": target, "first": headers_seen[0]}
            )
    missing = [name for name in required if name not in mapping]
    if missing:
        raise ImportFileError(
            _("No column for %(missing)s (headers: %(headers)s); name it with --map SRC=FIELD.")
            % {"missing": ", ".join(missing), "headers": headers_shown(headers)}
        )
    return mapping


def parse_amount(text: str) -> Decimal:
    stripped = _CURRENCY_NOISE.sub("", text or "")
    # A comma only separates thousands: "12,50" (a decimal comma) is refused rather than read as 1250.
    if ("," in stripped or "，" in stripped) and not _THOUSANDS_RE.match(stripped):
        raise ValueError(f"bad amount {shown(text)}")
    cleaned = stripped.replace(",", "").replace("，", "")
    try:
        amount = Decimal(cleaned)
    except InvalidOperation:
        raise ValueError(f"bad amount {shown(text)}") from None
    if not amount.is_finite():
        raise ValueError(f"bad amount {shown(text)}")
    if amount < 0:
        raise ValueError(f"negative amount {shown(text)}")
    if amount >= AMOUNT_LIMIT:
        raise ValueError(f"amount too large {shown(text)}")
    return amount.quantize(Decimal("0.01"))


# The date forms read without --date-format. PostgreSQL's import path applies the same pattern in SQL
# (members.importing.staging), so both paths accept and refuse the same cells.
DATE_PATTERN = (
    r"^([0-9]{4})-([0-9]{1,2})-([0-9]{1,2})"
    r"(?:[T ]+([0-9]{1,2}):([0-9]{2})(?::([0-9]{2})(?:[.]([0-9]{1,6}))?)? *(Z|[+-][0-9]{2}:?[0-9]{2})?)?$"
)
COMPACT_DATE_PATTERN = r"^([0-9]{4})([0-9]{2})([0-9]{2})$"
_DATE_RE = re.compile(DATE_PATTERN)
_COMPACT_DATE_RE = re.compile(COMPACT_DATE_PATTERN)


def parse_placed_at(text: str, date_format: str | None = None) -> datetime:
    """ISO dates and date-times (with or without offset; months, days and hours of one digit too), YYYY/MM/DD
    [HH:MM[:SS]], YYYYMMDD, or `date_format` (strptime). A time without an offset is in the programme's time zone; a
    date alone is its local midnight."""
    text = (text or "").strip()
    if not text:
        raise ValueError("missing date")
    try:
        if date_format:
            moment = datetime.strptime(text, date_format)
        else:
            moment = _match_date(text.replace("/", "-"))
    except ValueError:
        raise ValueError(f"bad date {shown(text)}") from None
    return timezone.make_aware(moment) if timezone.is_naive(moment) else moment


def _match_date(text: str) -> datetime:
    match = _COMPACT_DATE_RE.match(text)
    if match:
        return datetime(int(match[1]), int(match[2]), int(match[3]))
    match = _DATE_RE.match(text)
    if not match:
        raise ValueError(text)
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    moment = datetime(
        int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0),
        int((fraction or "0").ljust(6, "0")),
    )
    if offset:
        if offset == "Z":
            return moment.replace(tzinfo=UTC)
        sign = -1 if offset[0] == "-" else 1
        digits = offset[1:].replace(":", "")
        delta = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        return moment.replace(tzinfo=dt_timezone(sign * delta))
    return moment


def parse_status(text: str) -> str:
    key = (text or "").strip().lower()
    if not key:
        return "paid"
    if key not in _STATUS_INDEX:
        raise ValueError(f"unknown status {shown(text)}")
    return _STATUS_INDEX[key]


@dataclass(frozen=True)
class FileLayout:
    """What inspecting the head of a file found: how to read the rest."""

    encoding: str
    delimiter: str
    headers: list[str]
    columns: dict[str, int]  # our field -> column index
    data_offset: int  # the byte where the first data row starts
    size: int


def inspect_file(
    path: str | Path,
    *,
    encoding: str = "auto",
    mapping: dict[str, str] | None = None,
    fields: tuple[str, ...] = FIELDS,
    required: tuple[str, ...] = REQUIRED,
    header_names: dict[str, list[str]] | None = None,
) -> FileLayout:
    """Detect the encoding and delimiter and map the header row; raise ImportFileError when the file cannot be read.
    `fields`, `required` and `header_names` as for `map_headers` (default: an order file)."""
    path = Path(path)
    size = path.stat().st_size
    with path.open("rb") as raw:
        raw_sample = raw.read(SAMPLE_BYTES)
    # The data starts after the header's newline in the file as it is (NULs included); the header is read without them.
    raw_header_end = raw_sample.find(b"\n")
    if raw_header_end < 0 and size > len(raw_sample):
        raise ImportFileError(_("The first line (the header) is longer than %(size)s KB: this is not a CSV/TSV export.")
                              % {"size": SAMPLE_BYTES >> 10})
    data_offset = len(raw_sample) if raw_header_end < 0 else raw_header_end + 1
    sample = raw_sample.replace(b"\x00", b"")
    if not sample.strip():
        raise ImportFileError(_("The file is empty."))
    encoding = detect_encoding(sample) if encoding == "auto" else encoding
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise ImportFileError(_("Unknown encoding %(encoding)r.") % {"encoding": encoding}) from None
    if _SEPARATORS.encode("ascii").decode(encoding, errors="replace") != _SEPARATORS:
        # Lines and cells are cut on these bytes before decoding (UTF-16 and UTF-32 write them with NULs).
        raise ImportFileError(_("The encoding %(encoding)s is not supported: save the file as UTF-8 (or GBK).")
                              % {"encoding": encoding})
    header_end = sample.find(b"\n")
    header_bytes = sample if header_end < 0 else sample[: header_end + 1]
    try:
        header_text = header_bytes.decode(encoding).lstrip("\ufeff")
    except UnicodeDecodeError:
        raise ImportFileError(_("The file is not %(encoding)s; give --encoding.") % {"encoding": encoding}) from None
    try:
        delimiter = csv.Sniffer().sniff(header_text, delimiters=",;\t|").delimiter
    except csv.Error:
        delimiter = ","
    headers = next(csv.reader([header_text.rstrip("\r\n")], delimiter=delimiter), [])
    columns = map_headers(headers, mapping, fields=fields, required=required, header_names=header_names)
    return FileLayout(encoding, delimiter, headers, columns, data_offset, size)


def read_blocks(path: str | Path, layout: FileLayout, block_bytes: int = 8 << 20) -> Iterator[tuple[int, int, bytes]]:
    """The data rows in blocks of about `block_bytes`, each cut at a record boundary (a newline outside quotes), as
    (first line number, end offset in the file, bytes). NUL bytes (junk some exporters write) are dropped. The
    boundary test is safe in UTF-8 and GBK/GB18030, where neither a quote nor a newline occurs inside a character."""
    line = 2
    carry = b""
    with Path(path).open("rb") as raw:
        raw.seek(layout.data_offset)
        while True:
            chunk = raw.read(block_bytes)
            data = carry + chunk
            if not chunk:
                if data.strip(b"\r\n\x00 "):
                    yield line, raw.tell(), data.replace(b"\x00", b"")
                return
            cut = _record_boundary(data)
            if cut < 0 and len(data) > 2 * block_bytes:
                # No record boundary in two blocks' worth: a stray quote, not a quoted cell (read_records reads such
                # lines one by one anyway). Cut at a line, so memory stays flat.
                cut = data.rfind(b"\n")
            if cut < 0:
                carry = data
                continue
            block, carry = data[: cut + 1], data[cut + 1 :]
            yield line, raw.tell() - len(carry), block.replace(b"\x00", b"")
            line += block.count(b"\n")


def _record_boundary(data: bytes) -> int:
    """The last newline in `data` with an even number of quotes before it (so not inside a quoted cell), or -1."""
    quotes_before = data.count(b'"')
    cut = len(data)
    while True:
        newline = data.rfind(b"\n", 0, cut)
        if newline < 0:
            return -1
        quotes_before -= data.count(b'"', newline, cut)
        if quotes_before % 2 == 0:
            return newline
        cut = newline


def parse_block(
    block: bytes, first_line: int, layout: FileLayout, date_format: str | None = None, parse_row=None
) -> Iterator[ImportRow]:
    """The rows of one block, parsed in Python (SQLite, and PostgreSQL's path for blocks its COPY cannot load
    exactly). `parse_row(line, cells, columns, date_format) -> ImportRow` reads one row (default: an order row).
    Every record of the block that is not blank comes out, as a row or as a row error with its line number
    (see `read_records`)."""
    parse_row = parse_row or _parse_row
    for line, cells, error in read_records(block, first_line, layout):
        if error is not None:
            yield ImportRow(line=line, errors=[error])
        elif any(cell.strip() for cell in cells):
            yield parse_row(line, cells, layout.columns, date_format)


def read_records(block: bytes, first_line: int, layout: FileLayout) -> Iterator[tuple[int, list[str], str | None]]:
    """The block's records as (line, cells, None), or (line, [], reason) for a line that cannot be read. The rules,
    so that whatever a line holds it is read literally or reported, and no line takes its neighbours with it:

    - Lines end at LF or CR LF. A lone CR inside a line (outside quotes) makes that line unreadable: it is
      reported, not split into two rows.
    - Each line is decoded on its own under the file's encoding: invalid bytes fail that line (with the byte), never
      import as replacement characters.
    - A quoted cell may hold line breaks (the record then spans lines and counts once, at its first line). But when
      the lines so joined do not make exactly one row of the header's width, or a line after the first is a whole
      row by itself, the quote was stray: each line is read on its own (an unbalanced quote cannot swallow the rows
      after it).
    - Fully blank records (no cell with anything but whitespace) are not data and are skipped by the caller: "data
      lines" are the non-blank records.
    """
    lines = block.split(b"\n")
    if lines and not lines[-1]:
        lines.pop()  # the block ends with a newline
    group: list[tuple[int, str]] = []  # lines of a record whose quotes are not balanced yet
    quotes = 0
    for offset, raw in enumerate(lines):
        number = first_line + offset
        try:
            text = raw.decode(layout.encoding)
        except UnicodeDecodeError as error:
            yield from _group_records(group, layout)
            group, quotes = [], 0
            yield number, [], (f"not valid {layout.encoding}: byte 0x{raw[error.start]:02x} at byte {error.start + 1}"
                               f" of the line")
            continue
        line_quotes = text.count('"')
        if not group and not line_quotes and "\r" not in text[:-1]:
            # The common line, no quote and no stray CR: what the csv module would read, at a fraction of the cost.
            yield number, (text[:-1] if text.endswith("\r") else text).split(layout.delimiter), None
            continue
        group.append((number, text + "\n"))
        quotes += line_quotes
        if quotes % 2 == 0:
            yield from _group_records(group, layout)
            group, quotes = [], 0
    yield from _group_records(group, layout)  # an unbalanced quote at the end of the file


def _group_records(group: list[tuple[int, str]], layout: FileLayout) -> Iterator[tuple[int, list[str], str | None]]:
    if len(group) > 1:
        records = list(_csv_records(group, layout))
        width = len(layout.headers)
        if (
            len(records) == 1 and records[0][2] is None and len(records[0][1]) == width
            and not any(_width(text, layout) == width for _number, text in group[1:])
        ):
            yield records[0]
            return
    for line in group:  # a single line, or lines a stray quote joined: each on its own
        yield from _csv_records([line], layout)


def _csv_records(group: list[tuple[int, str]], layout: FileLayout) -> Iterator[tuple[int, list[str], str | None]]:
    reader = csv.reader((text for _number, text in group), delimiter=layout.delimiter)
    previous = 0  # lines of the group read before the current record
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            yield group[min(previous, len(group) - 1)][0], [], f"unreadable row: {error}"
            previous = reader.line_num
            continue
        yield group[previous][0], cells, None
        previous = reader.line_num


def _width(text: str, layout: FileLayout) -> int:
    try:
        return len(next(csv.reader([text], delimiter=layout.delimiter), []))
    except csv.Error:
        return -1


def read_orders(
    path: str | Path,
    *,
    encoding: str = "auto",
    mapping: dict[str, str] | None = None,
    date_format: str | None = None,
) -> tuple[dict[str, int], Iterator[ImportRow]]:
    """Open the file and map its headers (raising ImportFileError at once when it cannot be read), then return the
    mapping and an iterator of parsed rows, streamed."""
    layout = inspect_file(path, encoding=encoding, mapping=mapping)

    def rows() -> Iterator[ImportRow]:
        for first_line, _end, block in read_blocks(path, layout):
            yield from parse_block(block, first_line, layout, date_format)

    return layout.columns, rows()


def _parse_row(line: int, cells: list[str], columns: dict[str, int], date_format: str | None) -> ImportRow:
    row = ImportRow(line=line)
    raw = {name: (cells[index].strip() if index < len(cells) else "") for name, index in columns.items()}
    for name in ("order_id", "customer_id"):
        if not raw.get(name):
            row.errors.append(f"missing {name}")
        elif len(raw[name]) > ID_MAX_LENGTH:
            row.errors.append(f"{name} longer than {ID_MAX_LENGTH} characters")
        row.values[name] = raw.get(name, "")
    for name, parse in (
        ("placed_at", lambda text: parse_placed_at(text, date_format)),
        ("amount", parse_amount),
        ("status", parse_status),
    ):
        try:
            row.values[name] = parse(raw.get(name, ""))
        except ValueError as error:
            row.errors.append(str(error))
    quantity = raw.get("quantity") or "1"
    if quantity.isdigit() and int(quantity) >= 1:
        row.values["quantity"] = int(quantity)
    else:
        row.errors.append(f"bad quantity {shown(quantity)}")
    currency = (raw.get("currency") or settings.LOYALTY_CURRENCY).upper()
    if currency != settings.LOYALTY_CURRENCY:
        cut = currency[:SHOWN_CHARACTERS] + ("…" if len(currency) > SHOWN_CHARACTERS else "")
        row.errors.append(f"currency {cut} is not {settings.LOYALTY_CURRENCY}")
    placed_at = row.values.get("placed_at")
    if placed_at is not None and placed_at > timezone.now() + ORDER_CLOCK_SKEW:
        row.errors.append("placed_at is in the future")
    row.values["currency"] = currency
    for name in ("email", "phone", "name", "category", "channel"):
        row.values[name] = raw.get(name, "")[: TEXT_MAX_LENGTHS[name]]
    return row
