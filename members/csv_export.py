"""Every file the product hands staff to open in a spreadsheet is written here: CSV downloads (the points liability,
campaign results, dashboard charts, segment members, an import's failed rows) and, through `SpreadsheetSafeFormats`,
django-import-export's CSV, TSV and XLSX exports. tests/admin/test_csv_exports.py fails if a csv.writer appears
anywhere else.

Formula injection (CWE-1236): a cell that opens with = + - @, a tab or a carriage return is run as a formula by Excel,
WPS or LibreOffice (`=HYPERLINK(...)`, `@SUM(...)`, DDE payloads), and so are the full-width ＝ ＋ － ＠ that a Chinese
input method types, which Excel reads as their ASCII forms. Staff type tier, campaign and segment names, members type
their own names: such a cell gets a leading apostrophe, which spreadsheets show as text and do not run.

Numbers are cells of a number type (int, Decimal, float), never escaped: a negative balance, adjustment or uplift
stays a number finance can sum. Exports pass figures as numbers, not as formatted text. A text that merely looks like
a number is escaped like any other text: "+8613800000001" is a phone, which a spreadsheet would otherwise turn into
8.61E+12. A text that opens with apostrophes before such a character gets one more apostrophe, so
`spreadsheet_unescape` (the member import) gives back exactly what was exported.
"""
import csv
from collections.abc import Iterable, Iterator, Sequence
from datetime import date, datetime
from decimal import Decimal

from django.http import HttpResponse, StreamingHttpResponse
from import_export.formats import base_formats

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "＝", "＋", "－", "＠")
BOM = "\ufeff"  # Excel reads a CSV as UTF-8 (Chinese names) only after a byte order mark
CONTENT_TYPE = "text/csv; charset=utf-8"


def _runs_as_formula(text: str) -> bool:
    return text.lstrip("'").startswith(FORMULA_PREFIXES)


def spreadsheet_safe(value):
    """The value as a spreadsheet will read it as text: a formula-looking string gets a leading apostrophe. Anything
    that is not a string is returned as it is."""
    if isinstance(value, str) and _runs_as_formula(value):
        return "'" + value
    return value


def spreadsheet_unescape(value: str) -> str:
    """Undo `spreadsheet_safe` on a cell read back from a file."""
    if value.startswith("'") and _runs_as_formula(value[1:]):
        return value[1:]
    return value


def csv_cell(value):
    """One cell: numbers, dates and empties as they are, anything else as spreadsheet-safe text (a lazy translation,
    a model instance and a string alike)."""
    if value is None:
        return ""
    if isinstance(value, (bool, int, float, Decimal, date, datetime)):
        return value
    return spreadsheet_safe(str(value))


class _Echo:
    """A file whose write returns what it was given: csv.writer then yields lines for a streamed response."""

    def write(self, value):
        return value


def csv_lines(rows: Iterable[Sequence], *, header: Sequence | None = None, bom: bool = False) -> Iterator[str]:
    """The rows as CSV lines, every cell through `csv_cell`; lazily, so a streamed export holds one row at a time."""
    writer = csv.writer(_Echo())
    if bom:
        yield BOM
    if header is not None:
        yield writer.writerow([csv_cell(cell) for cell in header])
    for row in rows:
        yield writer.writerow([csv_cell(cell) for cell in row])


def csv_text(rows: Iterable[Sequence], *, header: Sequence | None = None) -> str:
    """A small export as one string (no BOM: `csv_response` adds it)."""
    return "".join(csv_lines(rows, header=header))


def csv_response(rows: Iterable[Sequence], *, filename: str, header: Sequence | None = None,
                 streaming: bool = False) -> HttpResponse | StreamingHttpResponse:
    """A CSV download with a BOM for Excel. `streaming` for exports that grow with the data (segment members, an
    import's failed rows): memory stays flat however many rows."""
    lines = csv_lines(rows, header=header, bom=True)
    if streaming:
        response = StreamingHttpResponse(lines, content_type=CONTENT_TYPE)
    else:
        response = HttpResponse("".join(lines), content_type=CONTENT_TYPE)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


# --- django-import-export -------------------------------------------------------------------------------------------


class _SpreadsheetSafeMixin:
    """The library's IMPORT_EXPORT_ESCAPE_FORMULAE_ON_EXPORT switch calls `_escape_formulae`, whose own version only
    deletes a leading "=" (losing data) and turns every cell into text (numbers become strings, an empty date the
    word "None"). Ours escapes each cell by the rule above and leaves other values alone."""

    def _escape_formulae(self, dataset):
        for _row in range(len(dataset)):
            dataset.append([spreadsheet_safe(cell) for cell in dataset.lpop()])


class SafeCSV(_SpreadsheetSafeMixin, base_formats.CSV):
    pass


class SafeTSV(_SpreadsheetSafeMixin, base_formats.TSV):
    pass


class SafeXLSX(_SpreadsheetSafeMixin, base_formats.XLSX):
    pass


SPREADSHEET_SAFE_FORMATS = [SafeCSV, SafeTSV, SafeXLSX]
# The admin asks widgets for native values (numbers as numbers) only for the formats in this list, matched by exact
# type: without it an XLSX export would write every amount as text.
if SafeXLSX not in base_formats.BINARY_FORMATS:
    base_formats.BINARY_FORMATS.append(SafeXLSX)
