"""The import's accounting identity as a property (issue 18): generated order files mix good rows (names with
backslashes, COPY's markers, stray and doubled quotes, commas in quoted cells, Chinese text, NUL bytes, CR LF or LF
endings) with hostile lines (`\\.`, `\\N`, unbalanced quotes, lone CRs, invalid UTF-8, long cells) and blank lines.
For every file: read = the non-blank lines, read = created + duplicates + conflicts + failed, every good row is
stored as written, and every failed line is reported with its own line number.

Runs on both databases (PostgreSQL: COPY with its re-read by the Python parser). LOYALTY_IMPORT_PROPERTY_EXAMPLES
(default 200) sets the number of generated files per run; the database is reused across them (one transaction, each
file its own order and customer ids), and the backfill handlers are left out: the property is about the rows."""
import os
from itertools import count

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from members.importing.orders import orders_import
from members.importing.reading import WHITESPACE
from members.models import ImportRowError, Order

EXAMPLES = int(os.environ.get("LOYALTY_IMPORT_PROPERTY_EXAMPLES", "200"))
HEADER = b"order_id,customer_id,name,phone,placed_at,amount,status"
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


@st.composite
def order_files(draw):
    """(content, good rows {order id: stored name}, number of data lines, the file's lines as (kind, number))."""
    file_number = next(FILES)
    kinds = draw(st.lists(st.sampled_from(["good", "good", "good", "hostile", "blank"]), min_size=1, max_size=25))
    endings = draw(st.lists(st.sampled_from([b"\n", b"\r\n"]), min_size=len(kinds) + 1, max_size=len(kinds) + 1))
    lines, good, data_lines = [HEADER], {}, 0
    for index, kind in enumerate(kinds):
        if kind == "good":
            order_id = f"P{file_number}-{index}"
            name = draw(NAME_TEXT)
            good[order_id] = name.replace("\x00", "").strip(WHITESPACE)
            lines.append(f"{order_id},pc-{file_number}-{index},{_cell(name, draw)},,2024-03-05 10:00:00,"
                         f"{index + 1}.50,paid".encode())
            data_lines += 1
        elif kind == "hostile":
            lines.append(draw(HOSTILE))
            data_lines += 1
        else:
            lines.append(draw(BLANK))
    last_newline = draw(st.booleans())
    content = b"".join(line + ending for line, ending in zip(lines, endings))
    if not last_newline:
        content = content[: -len(endings[-1])]
    return content, good, data_lines, kinds


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


@pytest.mark.django_db
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])
@given(generated=order_files())
def test_every_line_of_a_generated_file_is_stored_or_reported_and_the_counts_add_up(generated, tmp_path, rows_only):
    content, good, data_lines, _kinds = generated
    path = tmp_path / "orders.csv"
    path.write_bytes(content)
    note(f"file: {content!r}")

    report = orders_import(path=path, workers=1)

    assert report.rows_read == data_lines
    assert report.rows_read == report.created + report.duplicates + report.conflicts + report.failed
    stored = dict(Order.objects.filter(order_id__in=list(good)).values_list("order_id", "member__name"))
    assert stored == good
    assert report.created == len(good)
    failed_lines = list(ImportRowError.objects.filter(run=report.run).values_list("line", flat=True))
    assert len(failed_lines) == report.failed == len(set(failed_lines))
    good_lines = {number + 2 for number, kind in enumerate(_kinds) if kind == "good"}
    assert not good_lines & set(failed_lines)

