"""The import's accounting identity as a property (issue 18): generated order and opening-balance files mix good
rows (names with backslashes, COPY's markers, stray and doubled quotes, commas in quoted cells, Chinese text, NUL
bytes, CR LF or LF endings) with hostile lines (`\\.`, `\\N`, unbalanced quotes, lone CRs, invalid UTF-8, long
cells) and blank lines. For every file: read = the non-blank lines, read = created + duplicates + conflicts +
failed, every good row is stored as written, and every failed line is reported once with its own line number.

Runs on both databases (orders on PostgreSQL: COPY, with its re-read by the Python parser).
LOYALTY_IMPORT_PROPERTY_EXAMPLES (default 100) sets the number of generated order files per run (balances files:
half as many); the database is reused across them (one transaction, each file its own order and customer ids), and
the order import's backfill handlers are left out: the property is about the rows."""
import os
from itertools import count

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from members.importing.orders import orders_import
from members.importing.reading import WHITESPACE
from members.models import ImportRowError, Member, Order
from points.opening_balances import balances_import

# 100 derandomized files (each of up to dozens of good and hostile lines) keep the suite's time budget; on PostgreSQL
# each file is a COPY and its re-read. LOYALTY_IMPORT_PROPERTY_EXAMPLES=2000 runs a deeper search.
EXAMPLES = int(os.environ.get("LOYALTY_IMPORT_PROPERTY_EXAMPLES", "100"))
FILES = count()

# Names as shops and attackers write them, each a good row's third cell.
NAME_TEXT = st.lists(st.sampled_from(list('ab Z9\\.N"\'王芳\t;|,') + ["\\N", "\\.", '""', "\x00"]),
                     min_size=1, max_size=12).map("".join)
# Hostile lines: data lines that are not a good row (they fail, or are stored when they happen to be a row). They
# hold no delimiter, so two of them cannot join into one row of the header's width, and at least one visible
# character outside quotes, so they are never blank.
JUNK = st.lists(
    st.sampled_from([b"\\", b".", b"N", b'"', b"x", b" ", b"\r", b"\x00", b"\xff", b"\xc3\x28", b"\xe4\xb8",
                     "王".encode(), b"\t"]),
    max_size=10,
).map(lambda parts: b"X" + b"".join(parts))
HOSTILE = st.one_of(
    st.sampled_from([b"\\.", b"\\N", b"\\\\.", b"\\.\\N", b'"X', b'X"', b'"\\.', b'\\."', b"\x00\\.", b"\\.\x00",
                     b"X\rY", b'"X\rY', b"X\xff"]),
    JUNK,
    st.integers(min_value=200, max_value=5000).map(lambda size: b"L" + b"9" * size),
)
BLANK = st.sampled_from([b"", b"   ", b",,,,,,", b" ,\t,,", "\u3000".encode(), b"\x00", b",\x00,"])


ORDERS_HEADER = b"order_id,customer_id,name,phone,placed_at,amount,status"
BALANCES_HEADER = b"customer_id,name,points"


def order_row(file_number, index, name_cell):
    """A good order row: (its key, the row). Each has its own customer, so the member's name is this row's."""
    key = f"P{file_number}-{index}"
    return key, f"{key},pc-{file_number}-{index},{name_cell},,2024-03-05 10:00:00,{index + 1}.50,paid"


def balances_row(file_number, index, name_cell):
    key = f"pb-{file_number}-{index}"
    return key, f"{key},{name_cell},{index + 1}"


@st.composite
def import_files(draw, header, good_row, max_lines=25):
    """(content, encoding, good rows {key: stored name}, number of data lines, the line numbers of the good rows).
    The encoding is mostly given (utf-8): invalid bytes must then fail their line. Sometimes it is "auto": a sample
    that is mostly invalid bytes can pass for GB18030 (no rule reads every such file right), so there only the
    identity is checked, and the names when UTF-8 was detected."""
    file_number = next(FILES)
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8", "auto"]))
    kinds = draw(st.lists(st.sampled_from(["good", "good", "good", "hostile", "blank"]), min_size=1,
                          max_size=max_lines))
    endings = draw(st.lists(st.sampled_from([b"\n", b"\r\n"]), min_size=len(kinds) + 1, max_size=len(kinds) + 1))
    lines, good, data_lines, good_lines = [header], {}, 0, set()
    for index, kind in enumerate(kinds):
        if kind == "good":
            name = draw(NAME_TEXT)
            key, row = good_row(file_number, index, _cell(name, draw))
            good[key] = name.replace("\x00", "").strip(WHITESPACE)
            lines.append(row.encode())
            good_lines.add(index + 2)
            data_lines += 1
        elif kind == "hostile":
            lines.append(draw(HOSTILE))
            data_lines += 1
        else:
            lines.append(draw(BLANK))
    last_newline = draw(st.booleans())
    content = b"".join(line + ending for line, ending in zip(lines, endings, strict=False))
    if not last_newline:
        content = content[: -len(endings[-1])]
    return content, encoding, good, data_lines, good_lines


def _cell(name, draw):
    """The name as a CSV cell: quoted (inner quotes doubled) when it must be or when the draw says so; otherwise as it
    is, stray quotes inside included (read literally), unless it starts with one (that would open a quoted cell)."""
    needs_quotes = "," in name or name.lstrip(WHITESPACE + "\x00").startswith('"') or "\r" in name
    if needs_quotes or draw(st.booleans()):
        return '"' + name.replace('"', '""') + '"'
    return name


@pytest.fixture
def rows_only(settings):
    settings.LOYALTY_IMPORT_BACKFILL_HANDLERS = []


def identity_holds(report, data_lines, good_lines):
    """read = the data lines = created + duplicates + conflicts + failed; every failed line once, no good one."""
    assert report.rows_read == data_lines
    assert report.rows_read == report.created + report.duplicates + report.conflicts + report.failed
    failed_lines = list(ImportRowError.objects.filter(run=report.run).values_list("line", flat=True))
    assert len(failed_lines) == report.failed == len(set(failed_lines))
    assert not good_lines & set(failed_lines)
    return True


PROPERTY = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large])
# The balances import registers each new member through member_register (tens of ms each): half as many files.
BALANCES_PROPERTY = settings(PROPERTY, max_examples=max(EXAMPLES // 2, 1))


@pytest.mark.django_db
@PROPERTY
@given(generated=import_files(ORDERS_HEADER, order_row))
def test_every_line_of_a_generated_order_file_is_stored_or_reported_and_the_counts_add_up(
    generated, tmp_path, rows_only
):
    content, encoding, good, data_lines, good_lines = generated
    path = tmp_path / "orders.csv"
    path.write_bytes(content)
    note(f"file: {content!r}")

    report = orders_import(path=path, encoding=encoding, workers=1)

    assert identity_holds(report, data_lines, good_lines)
    if report.run.options["encoding"] != "utf-8":
        return  # "auto" read the file as GB18030
    assert report.created == len(good)
    stored = dict(Order.objects.filter(order_id__in=list(good)).values_list("order_id", "member__name"))
    assert stored == good


@pytest.mark.django_db
@BALANCES_PROPERTY
@given(generated=import_files(BALANCES_HEADER, balances_row, max_lines=10))
def test_every_line_of_a_generated_balances_file_is_stored_or_reported_and_the_counts_add_up(generated, tmp_path):
    content, encoding, good, data_lines, good_lines = generated
    path = tmp_path / "balances.csv"
    path.write_bytes(content)
    note(f"file: {content!r}")

    report = balances_import(path=path, encoding=encoding)

    assert identity_holds(report, data_lines, good_lines)
    if report.run.options["encoding"] != "utf-8":
        return  # "auto" read the file as GB18030
    assert report.created == len(good)
    stored = Member.objects.filter(external_id__in=list(good)).values_list("external_id", "name", "points_balance")
    assert {key: (name, points) for key, name, points in stored} == {
        key: (name, int(key.rsplit("-", 1)[1]) + 1) for key, name in good.items()
    }
