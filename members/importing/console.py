"""What the import commands print (`manage.py import_orders`, `manage.py import_balances`): the --map option, the
progress bar and the rejected lines, written once for both importers.

The progress bar redraws one line on a terminal; when the output is a file (a cron log, CI) it writes plain lines
every few seconds instead, so a long import neither floods the log nor goes silent.
"""
import time

from django.core.management.base import CommandError, OutputWrapper
from django.core.management.color import Style

from .lifecycle import ImportProgress, ImportReport

ERRORS_SHOWN = 20  # rejected lines printed; all of them are in the admin
LOG_EVERY_SECONDS = 5  # plain progress lines, when the output is not a terminal


def mapping_parse(pairs: list[str]) -> dict[str, str]:
    """--map SRC=FIELD options -> {SRC: FIELD}."""
    mapping = {}
    for pair in pairs:
        source, sep, target = pair.partition("=")
        if not sep or not source.strip() or not target.strip():
            raise CommandError(f"--map wants SRC=FIELD, got {pair!r}")
        mapping[source.strip()] = target.strip()
    return mapping


def progress_bar(share: float, width: int = 24) -> str:
    filled = int(share * width)
    return "[" + "#" * filled + "." * (width - filled) + "]"


class ProgressReporter:
    """The importers' `on_progress`: a bar for the rows phase (share of the file's bytes, rows per second) and one
    for the order import's backfill (members done of the total). `end()` closes the bar's line on a terminal."""

    def __init__(self, stdout: OutputWrapper):
        self.stdout = stdout
        self.terminal = stdout.isatty()
        self.last_line = 0.0

    def __call__(self, event: ImportProgress) -> None:
        now = time.monotonic()
        if not self.terminal and now - self.last_line < LOG_EVERY_SECONDS and event.bytes_done < event.bytes_total:
            return  # plain log lines, every few seconds, when the output is a file
        self.last_line = now
        if event.phase == "rows":
            share = event.bytes_done / event.bytes_total if event.bytes_total else 1
            rate = event.done / event.seconds if event.seconds else 0
            text = f"rows   {progress_bar(share)} {share:6.1%}  {event.done:>12,} rows  {rate:>10,.0f} rows/s"
        else:
            share = event.done / event.total if event.total else 1
            text = f"backfill {progress_bar(share)} {share:6.1%}  {event.done:>10,} / {event.total:,} members"
        if self.terminal:
            self.stdout.write("\r" + text, ending="")
            self.stdout.flush()
        else:
            self.stdout.write(text)

    def end(self) -> None:
        if self.terminal:
            self.stdout.write("")


def rejected_lines_write(stdout: OutputWrapper, style: Style, report: ImportReport) -> None:
    """The first rejected lines with their reasons, then where the rest are (the run's failed rows in the admin)."""
    for line, reference, reason in report.errors[:ERRORS_SHOWN]:
        stdout.write(style.WARNING(f"  line {line}: {reference + ': ' if reference else ''}{reason}"))
    hidden = report.failed + report.conflicts - min(len(report.errors), ERRORS_SHOWN)
    if hidden > 0:
        where = (f"the admin (Members › Import runs › #{report.run.pk}, failed rows as CSV)"
                 if report.run else "a run without --dry-run")
        stdout.write(f"  … and {hidden:,} more; every failed row with its reason is in {where}.")
