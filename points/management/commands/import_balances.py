"""manage.py import_balances PATH: opening points balances and tiers from another loyalty system.

    manage.py import_balances balances.csv                      # add the file's lots to what members have
    manage.py import_balances balances.csv --mode overwrite     # each member's balance ends at the file's total
    manage.py import_balances export.csv --map 卡号=customer_id --encoding gbk
    manage.py import_balances balances.csv --date-format %d.%m.%Y
    manage.py import_balances balances.csv --dry-run            # reports what it would do, writes nothing
    manage.py import_balances balances.csv --strict             # all or nothing: stops at the first bad row

Columns: customer_id (required), points, expires_at, tier, tier_expires_at, email, phone, name (see
points.opening_balances). Run it again on the same file at any time: what it already wrote counts as duplicates, so
an interrupted import completes and a finished one changes nothing.
"""
from django.core.management.base import BaseCommand, CommandError

from members.importing.console import ProgressReporter, mapping_parse, rejected_lines_write
from points.opening_balances import (
    BATCH_MEMBERS,
    FIELDS,
    MODES,
    ImportFileError,
    StrictStop,
    balances_import,
)


class Command(BaseCommand):
    help = "Import opening points balances (lots with their expiry) and tiers from another loyalty system's export."

    def add_arguments(self, parser):
        parser.add_argument("path")
        parser.add_argument("--mode", choices=MODES, default="add",
                            help="add: the file's lots are added to what members have (the default); overwrite: each "
                                 "member's available balance ends equal to the file's total for them.")
        parser.add_argument("--map", action="append", default=[], metavar="SRC=FIELD",
                            help=f"Read column SRC as FIELD ({', '.join(FIELDS)}).")
        parser.add_argument("--encoding", default="auto", help="auto (UTF-8, UTF-8 with BOM, GBK/GB18030), or a name.")
        parser.add_argument("--date-format", default=None,
                            help="strptime format of the date columns, e.g. %%d.%%m.%%Y (a date alone: valid through "
                                 "that day)")
        parser.add_argument("--dry-run", action="store_true", help="Read and check everything; write nothing.")
        parser.add_argument("--strict", action="store_true", help="Stop at the first bad row, with nothing written.")
        parser.add_argument("--batch-members", type=int, default=BATCH_MEMBERS,
                            help="Members per transaction.")

    def handle(self, *args, path, mode, map, encoding, date_format, dry_run, strict, batch_members, **options):
        progress = ProgressReporter(self.stdout)

        try:
            report = balances_import(
                path=path, mode=mode, encoding=encoding, mapping=mapping_parse(map), date_format=date_format,
                dry_run=dry_run, strict=strict, batch_members=batch_members, on_progress=progress,
            )
        except FileNotFoundError:
            raise CommandError(f"No such file: {path}") from None
        except ImportFileError as error:
            raise CommandError(str(error)) from None
        except StrictStop as stop:
            progress.end()
            raise CommandError(f"--strict: stopped at line {stop.line}: {stop.reason}. Nothing was written.") from None
        progress.end()
        heading = ("Dry run: nothing was written." if report.dry_run
                   else f"Import #{report.run.pk} completed ({report.mode}).")
        self.stdout.write(self.style.SUCCESS(heading) if not report.failed else heading)
        self.stdout.write(
            f"  rows read {report.rows_read:,}  ·  created {report.created:,}  ·  duplicates {report.duplicates:,}"
            f"  ·  failed {report.failed:,}  ·  members created {report.members_created:,}"
        )
        self.stdout.write(
            f"  points credited {report.points_credited:,} in {report.lots_created:,} lots  ·  tiers set "
            f"{report.tiers_set:,}"
        )
        if report.mode == "overwrite":
            self.stdout.write(
                f"  balances reset {report.members_reset:,} members ({report.points_removed:,} points taken, "
                f"{report.debt_cleared:,} points of debt cleared)"
            )
        self.stdout.write(f"  {report.rows_seconds:.1f} s")
        rejected_lines_write(self.stdout, self.style, report)
