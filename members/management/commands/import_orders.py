"""manage.py import_orders PATH: import a shop's order export, then backfill members, growth, points and tiers.

    manage.py import_orders orders.csv
    manage.py import_orders export.csv --map 单号=order_id --map 买家=customer_id --encoding gbk
    manage.py import_orders orders.csv --date-format %d.%m.%Y --award-points
    manage.py import_orders orders.csv --dry-run      # reports what it would do, writes nothing
    manage.py import_orders orders.csv --strict       # all or nothing: stops at the first bad row

Run it again on the same file at any time: rows already in count as duplicates, so an interrupted import completes.
"""

from django.core.management.base import BaseCommand, CommandError

from members.importing import ImportFileError
from members.importing.console import ProgressReporter, mapping_parse, rejected_lines_write
from members.importing.orders import BLOCK_BYTES, StrictStop, orders_import


class Command(BaseCommand):
    help = "Import historical orders from a CSV/TSV export (streamed, batched), then backfill the members."

    def add_arguments(self, parser):
        parser.add_argument("path")
        parser.add_argument("--map", action="append", default=[], metavar="SRC=FIELD",
                            help="Read column SRC as FIELD (order_id, customer_id, email, phone, name, placed_at, "
                                 "amount, currency, quantity, category, channel, status).")
        parser.add_argument("--encoding", default="auto", help="auto (UTF-8, UTF-8 with BOM, GBK/GB18030 or cp1252), or a name.")
        parser.add_argument("--date-format", default=None, help="strptime format of the date column, e.g. %%d.%%m.%%Y")
        points = parser.add_mutually_exclusive_group()
        points.add_argument("--award-points", dest="award_points", action="store_true",
                            help="Credit points for the imported orders (dated at the orders, expired by the policy).")
        points.add_argument("--no-award-points", dest="award_points", action="store_false",
                            help="Do not credit points (the default: bring balances over with import_balances).")
        parser.set_defaults(award_points=False)
        parser.add_argument("--dry-run", action="store_true", help="Read and check everything; write nothing.")
        parser.add_argument("--strict", action="store_true", help="Stop at the first bad row, with nothing written.")
        parser.add_argument("--block-mb", type=int, default=BLOCK_BYTES >> 20,
                            help="Megabytes of file per batch (one transaction each).")
        parser.add_argument("--workers", type=int, default=None,
                            help="Batches written at once (default: 2 on PostgreSQL, 1 on SQLite).")

    def handle(self, *args, path, map, encoding, date_format, award_points, dry_run, strict, block_mb, workers,
               **options):
        progress = ProgressReporter(self.stdout)

        try:
            report = orders_import(
                path=path, encoding=encoding, mapping=mapping_parse(map), date_format=date_format,
                award_points=award_points, dry_run=dry_run, strict=strict, block_bytes=max(block_mb, 1) << 20,
                workers=workers, on_progress=progress,
            )
        except FileNotFoundError:
            raise CommandError(f"No such file: {path}") from None
        except ImportFileError as error:
            raise CommandError(str(error)) from None
        except StrictStop as stop:
            progress.end()
            raise CommandError(f"--strict: stopped at line {stop.line}: {stop.reason}. Nothing was written.") from None
        progress.end()
        rate = report.rows_read / report.rows_seconds if report.rows_seconds else 0
        heading = "Dry run: nothing was written." if report.dry_run else f"Import #{report.run.pk} completed."
        self.stdout.write(self.style.SUCCESS(heading) if not (report.failed or report.conflicts) else heading)
        self.stdout.write(
            f"  rows read {report.rows_read:,}  ·  created {report.created:,}  ·  duplicates {report.duplicates:,}"
            f"  ·  conflicts {report.conflicts:,}  ·  failed {report.failed:,}  ·  members created "
            f"{report.members_created:,}"
        )
        self.stdout.write(f"  encoding {report.encoding}  ·  rows phase {report.rows_seconds:.1f} s ({rate:,.0f} rows/s)")
        if not report.dry_run:
            self.stdout.write(
                f"  backfill {report.backfill_seconds:.1f} s for {report.backfilled_members:,} members"
                f" (aggregates, growth, {'points, ' if award_points else ''}tiers)"
            )
        rejected_lines_write(self.stdout, self.style, report)
