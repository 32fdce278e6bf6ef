"""Reading the order files people really have: the first piece of the historical import.

`read_orders(path, ...)` streams a CSV/TSV export row by row (memory stays flat whatever the size) and yields
`ImportRow`s: either the order's fields, parsed, or the reasons the line cannot be imported, with its line number.
It detects the encoding (UTF-8, UTF-8 with BOM, GBK/GB18030), sniffs the delimiter, maps headers to our fields
(English and Chinese names, `--map SRC=FIELD` for the rest) and parses dates and amounts as shops export them.
Writing the orders (set-based, in batches) builds on this.
"""
import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation
from pathlib import Path

from django.utils import timezone

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
SAMPLE_BYTES = 64 * 1024


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
    """utf-8-sig for a BOM, utf-8 when the sample decodes as UTF-8, else GB18030 (a superset of GBK and GB2312)."""
    if sample.startswith(b"\xef\xbb\xbf"):
        return "utf-8-sig"
    try:
        sample.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError as error:
        if error.start >= len(sample) - 3:  # the sample cut a multi-byte character in two
            return "utf-8"
    try:
        sample.decode("gb18030")
        return "gb18030"
    except UnicodeDecodeError:
        raise ImportFileError("The file is neither UTF-8 nor GBK/GB18030; give --encoding.") from None


def map_headers(headers: list[str], overrides: dict[str, str] | None = None) -> dict[str, int]:
    """Our field -> column index. `overrides` maps a source header to our field (--map SRC=FIELD) and wins."""
    overrides = {_normalise_header(src): target for src, target in (overrides or {}).items()}
    for target in overrides.values():
        if target not in FIELDS:
            raise ImportFileError(f"--map: unknown field {target!r}; fields are {', '.join(FIELDS)}.")
    mapping: dict[str, int] = {}
    candidates: dict[str, list[str]] = {}
    for index, header in enumerate(headers):
        key = _normalise_header(header)
        target = overrides.get(key) or _HEADER_INDEX.get(key)
        if target is None:
            continue
        if target in mapping and key not in overrides:
            candidates.setdefault(target, [headers[mapping[target]]]).append(header)
            continue
        mapping[target] = index
    for target, headers_seen in candidates.items():
        if not any(_normalise_header(h) in overrides for h in headers_seen):
            raise ImportFileError(
                f"Columns {', '.join(repr(h) for h in headers_seen)} could all be {target}; choose one with "
                f"--map '{headers_seen[0]}={target}'."
            )
    missing = [name for name in REQUIRED if name not in mapping]
    if missing:
        raise ImportFileError(
            f"No column for {', '.join(missing)} (headers: {', '.join(headers)}); name it with --map SRC=FIELD."
        )
    return mapping


def parse_amount(text: str) -> Decimal:
    cleaned = _CURRENCY_NOISE.sub("", text or "").replace(",", "").replace("，", "")
    try:
        amount = Decimal(cleaned)
    except InvalidOperation:
        raise ValueError(f"bad amount {text!r}") from None
    if not amount.is_finite():
        raise ValueError(f"bad amount {text!r}")
    if amount < 0:
        raise ValueError(f"negative amount {text!r}")
    return amount.quantize(Decimal("0.01"))


def parse_placed_at(text: str, date_format: str | None = None) -> datetime:
    """ISO dates and date-times (with or without offset), YYYYMMDD, YYYY/MM/DD [HH:MM[:SS]], or `date_format`.
    A time without an offset is in the programme's time zone; a date alone is its local midnight."""
    text = (text or "").strip()
    if not text:
        raise ValueError("missing date")
    try:
        if date_format:
            moment = datetime.strptime(text, date_format)
        elif re.fullmatch(r"\d{8}", text):
            moment = datetime.combine(date(int(text[:4]), int(text[4:6]), int(text[6:])), time.min)
        else:
            moment = datetime.fromisoformat(text.replace("/", "-"))
    except ValueError:
        raise ValueError(f"bad date {text!r}") from None
    return timezone.make_aware(moment) if timezone.is_naive(moment) else moment


def parse_status(text: str) -> str:
    key = (text or "").strip().lower()
    if not key:
        return "paid"
    if key not in _STATUS_INDEX:
        raise ValueError(f"unknown status {text!r}")
    return _STATUS_INDEX[key]


def read_orders(
    path: str | Path,
    *,
    encoding: str = "auto",
    mapping: dict[str, str] | None = None,
    date_format: str | None = None,
) -> tuple[dict[str, int], Iterator[ImportRow]]:
    """Open the file and map its headers (raising ImportFileError at once when it cannot be read), then return the
    mapping and an iterator of parsed rows, streamed."""
    path = Path(path)
    with path.open("rb") as raw:
        sample = raw.read(SAMPLE_BYTES)
    encoding = detect_encoding(sample) if encoding == "auto" else encoding
    try:
        text_sample = sample.decode(encoding, errors="ignore")
    except LookupError:
        raise ImportFileError(f"Unknown encoding {encoding!r}.") from None
    try:
        dialect = csv.Sniffer().sniff(text_sample.split("\n", 1)[0], delimiters=",;\t|")
        delimiter = dialect.delimiter
    except csv.Error:
        delimiter = ","
    handle = path.open(encoding=encoding, newline="", errors="strict")
    reader = csv.reader(handle, delimiter=delimiter)
    try:
        headers = next(reader)
    except StopIteration:
        handle.close()
        raise ImportFileError("The file is empty.") from None
    except UnicodeDecodeError:
        handle.close()
        raise ImportFileError(f"The file is not {encoding}; give --encoding.") from None
    try:
        columns = map_headers(headers, mapping)
    except ImportFileError:
        handle.close()
        raise

    def rows() -> Iterator[ImportRow]:
        with handle:
            for line, cells in enumerate(reader, start=2):
                if not any(cell.strip() for cell in cells):
                    continue
                yield _parse_row(line, cells, columns, date_format)

    return columns, rows()


def _parse_row(line: int, cells: list[str], columns: dict[str, int], date_format: str | None) -> ImportRow:
    row = ImportRow(line=line)
    raw = {name: (cells[index].strip() if index < len(cells) else "") for name, index in columns.items()}
    for name in ("order_id", "customer_id"):
        if not raw.get(name):
            row.errors.append(f"missing {name}")
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
        row.errors.append(f"bad quantity {quantity!r}")
    for name in ("email", "phone", "name", "currency", "category", "channel"):
        row.values[name] = raw.get(name, "")
    return row
