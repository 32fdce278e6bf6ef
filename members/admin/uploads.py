"""Uploads for the member and order imports: the import permission, row counting against the admin's size limit,
XLSX reading, and the staging of an order file for the import engine (a token in the session, never a path).
"""
import csv
import secrets
import time as clock
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

from django import forms
from django.conf import settings
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils.translation import gettext_lazy as _
from import_export.formats.base_formats import XLSX
from unfold.contrib.import_export.forms import ImportForm
from unfold.decorators import action
from unfold.widgets import (
    UnfoldBooleanSwitchWidget,
)

from members.importing import ImportFileError

# --- Imports and exports (django-import-export, the order import engine) ---------------------------------------------
#
# Members: django-import-export's own two steps (a dry run shown as a preview, then the confirmed import), each row
# written by `member_register` (members.resources.MemberResource).
#
# Orders: the same two steps on the same URLs (the changelist's Import button), but the work is done by the order
# import engine behind `manage.py import_orders`, which is set-based and reports by file line, not by a resource:
# the upload is saved under DATA_DIR/imports/pending (XLSX converted to UTF-8 CSV, CSV/TSV kept byte for byte so the
# engine detects GBK or a BOM), the engine runs as a dry run for the preview, and the confirmation names the file by
# a random token kept in the staff member's session, never by a path the browser sends.
# Files above LOYALTY_ADMIN_IMPORT_MAX_ROWS rows are not imported within a request: with a Celery broker the
# confirmation moves the file to DATA_DIR/imports and queues `members.tasks.import_orders_file`; without one, staff
# are told to run the command on the server.

IMPORT_PERMISSION = "members.import_data"
PENDING_IMPORTS_SESSION_KEY = "members.pending_order_imports"
PENDING_IMPORTS_KEPT = 5  # previews a staff member may have open at once
PENDING_IMPORT_MAX_AGE = timedelta(days=1)  # an abandoned preview's file is removed after this


def imports_dir() -> Path:
    return Path(settings.DATA_DIR) / "imports"


def pending_imports_dir() -> Path:
    return imports_dir() / "pending"


class ImportPermissionMixin:
    """Importing (members and orders) needs members.import_data, whatever the model: one permission for staff
    roles to grant. Exports need the model's view permission (IMPORT_EXPORT_EXPORT_PERMISSION_CODE)."""

    def has_import_permission(self, request):
        return request.user.has_perm(IMPORT_PERMISSION)

    # The import runs' list, one click from the lists staff import into. A permission method, not
    # "members.view_importrun": Unfold's system check looks dotted permissions up in the database, which breaks
    # `migrate` on a fresh install.
    @action(description=_("Import history"), url_path="import-history", icon="history",
            permissions=["import_history"])
    def import_history(self, request):
        return HttpResponseRedirect(reverse("admin:members_importrun_changelist"))

    def has_import_history_permission(self, request, obj=None):
        return request.user.has_perm("members.view_importrun")


def import_rows_over_limit(rows: int) -> bool:
    return rows > settings.LOYALTY_ADMIN_IMPORT_MAX_ROWS


def _count_text_rows(upload) -> int:
    """Data rows of a CSV/TSV upload, by counting line ends (a quoted cell spanning lines counts twice: an upper
    bound, which is what the size limit needs). The header is not a row."""
    lines, last = 0, b"\n"
    for chunk in upload.chunks():
        lines += chunk.count(b"\n")
        last = chunk[-1:] or last
    upload.seek(0)
    return max(lines + (0 if last == b"\n" else 1) - 1, 0)


def _xlsx_cell_text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # an id or a phone typed as a number, not "1001.0"
    return str(value)


def xlsx_rows(upload):
    """The first sheet's rows as text cells, streamed (openpyxl read-only). Raises ImportFileError when the upload
    is not an Excel workbook."""
    from zipfile import BadZipFile

    import openpyxl  # only XLSX uploads need it
    from openpyxl.utils.exceptions import InvalidFileException

    upload.seek(0)
    try:
        workbook = openpyxl.load_workbook(upload, read_only=True, data_only=True)
    except (BadZipFile, InvalidFileException, KeyError, OSError) as error:
        raise ImportFileError(_("This is not an Excel workbook (.xlsx): %(error)s") % {"error": error}) from error
    try:
        for row in workbook.active.iter_rows(values_only=True):
            yield [_xlsx_cell_text(value) for value in row]
    finally:
        workbook.close()


def _xlsx_to_csv(upload, path: Path) -> int:
    """Write the workbook's first sheet as UTF-8 CSV; returns the data rows. Empty rows stay as blank lines between
    rows, so the engine's line numbers are the sheet's row numbers; trailing empty rows are dropped."""
    data_rows, blank_run, header_seen = 0, 0, False
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        for cells in xlsx_rows(upload):
            if not any(cell.strip() for cell in cells):
                blank_run += 1
                continue
            out.write("\n" * blank_run)
            blank_run = 0
            writer.writerow(cells)
            if header_seen:
                data_rows += 1
            header_seen = True
    return data_rows


@dataclass
class StagedImport:
    token: str
    path: Path
    file_name: str
    rows: int


def stage_order_upload(upload, file_format) -> StagedImport:
    """Save an uploaded order file for the engine under DATA_DIR/imports/pending: XLSX as UTF-8 CSV, CSV/TSV as
    uploaded. Counts its rows on the way (for the size limit)."""
    directory = pending_imports_dir()
    directory.mkdir(parents=True, exist_ok=True)
    _remove_abandoned_uploads(directory)
    token = secrets.token_urlsafe(24)
    path = directory / f"{token}.csv"
    try:
        if isinstance(file_format, XLSX):
            rows = _xlsx_to_csv(upload, path)
        else:
            rows = _count_text_rows(upload)
            with path.open("wb") as out:
                for chunk in upload.chunks():
                    out.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return StagedImport(token=token, path=path, file_name=Path(upload.name).name, rows=rows)


def _remove_abandoned_uploads(directory: Path) -> None:
    cutoff = clock.time() - PENDING_IMPORT_MAX_AGE.total_seconds()
    for stale in directory.glob("*.csv"):
        try:
            if stale.stat().st_mtime < cutoff:
                stale.unlink()
        except FileNotFoundError:
            pass  # another request removed it first


def remember_staged(request, staged: StagedImport) -> None:
    pending = dict(request.session.get(PENDING_IMPORTS_SESSION_KEY, {}))
    pending[staged.token] = {"path": str(staged.path), "file_name": staged.file_name, "rows": staged.rows}
    for token in list(pending)[:-PENDING_IMPORTS_KEPT]:
        Path(pending.pop(token)["path"]).unlink(missing_ok=True)
    request.session[PENDING_IMPORTS_SESSION_KEY] = pending


def take_staged(request, token: str) -> StagedImport | None:
    """The upload a preview's token names, taken out of the session (a confirmation runs once). Only a file this
    session staged, inside the pending folder, is ever opened."""
    pending = dict(request.session.get(PENDING_IMPORTS_SESSION_KEY, {}))
    entry = pending.pop(token, None) if token else None
    request.session[PENDING_IMPORTS_SESSION_KEY] = pending
    if entry is None:
        return None
    path = Path(entry["path"])
    if path.resolve().parent != pending_imports_dir().resolve() or not path.is_file():
        return None
    return StagedImport(token=token, path=path, file_name=entry["file_name"], rows=int(entry["rows"]))


def too_many_rows_message(rows: int) -> str:
    return _(
        "This file has about %(rows)s rows, more than the %(limit)s the admin imports while you wait. "
        "Ask whoever runs the server to import it with: manage.py import_orders <file> "
        "(it streams any size, shows progress and can be run again safely)."
    ) % {"rows": rows, "limit": settings.LOYALTY_ADMIN_IMPORT_MAX_ROWS}


class MemberImportForm(ImportForm):
    """Unfold's import form, refusing files with more members than an import in a request should take (each row is
    one member_register call, run twice: preview and import)."""

    def __init__(self, formats, resources, **kwargs):
        super().__init__(formats, resources, **kwargs)
        self.import_formats = formats

    def clean(self):
        cleaned = super().clean()
        upload, chosen = cleaned.get("import_file"), cleaned.get("format")
        if upload is None or chosen in (None, ""):
            return cleaned
        file_format = self.import_formats[int(chosen)]()
        try:
            if isinstance(file_format, XLSX):
                rows = sum(1 for cells in xlsx_rows(upload) if any(cell.strip() for cell in cells)) - 1
            else:
                rows = _count_text_rows(upload)
        except ImportFileError as error:
            self.add_error("import_file", str(error))
            return cleaned
        finally:
            upload.seek(0)
        if import_rows_over_limit(rows):
            self.add_error("import_file", _(
                "This file has about %(rows)s rows; the admin imports at most %(limit)s members at a time. "
                "Split the file and import the parts one after the other."
            ) % {"rows": rows, "limit": settings.LOYALTY_ADMIN_IMPORT_MAX_ROWS})
        return cleaned


AWARD_POINTS_HELP = _(
    "Credit points for these orders, dated at each order and expiring by the points policy (points long expired end "
    "as expired). Leave it off when the balances of the previous system are imported as opening balances."
)


class OrderImportForm(ImportForm):
    award_points = forms.BooleanField(label=_("Award points"), required=False, help_text=AWARD_POINTS_HELP,
                                      widget=UnfoldBooleanSwitchWidget)


class OrderImportConfirmForm(forms.Form):
    token = forms.CharField(widget=forms.HiddenInput, max_length=64)
    award_points = forms.BooleanField(required=False, widget=forms.HiddenInput)
