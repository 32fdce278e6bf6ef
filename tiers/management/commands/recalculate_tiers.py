"""`manage.py recalculate_tiers [--as-of DATE] [--since DATE --step day|week|month]`: apply the tier rules to every
member (also the nightly scheduled task)."""
import sys
import time
from datetime import date, datetime, timedelta

from dateutil.relativedelta import relativedelta
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from tiers.evaluation import RULE_LABELS, Mode
from tiers.services import RECALCULATE_BATCH_SIZE, tiers_recalculate
from tiers.windows import local_midnight


def end_of_day(day: date) -> datetime:
    """A date stands for its last moment in the site's time zone: everything that happened that day counts."""
    return local_midnight(day + timedelta(days=1)) - timedelta(microseconds=1)


class Command(BaseCommand):
    help = (
        "Refresh every member's growth, spend and orders in the qualification window and apply the tier rules: "
        "upgrades, renewals, grace periods, downgrades and override ends. Set-based and batched; idempotent for a "
        "given --as-of. With --since it replays history day by day (or week, month) up to --as-of, e.g. after an "
        "import of past orders."
    )

    def add_arguments(self, parser):
        parser.add_argument("--as-of", type=date.fromisoformat, help="Evaluate as of the end of this day (site time "
                            "zone). Default: now.")
        parser.add_argument("--since", type=date.fromisoformat, help="Replay from the end of this day up to --as-of.")
        parser.add_argument("--step", choices=["day", "week", "month"], default="day", help="Replay step.")
        parser.add_argument("--mode", choices=[m.value for m in Mode], default=Mode.NORMAL,
                            help="normal (all rules), upgrades (only moves up), ladder (full re-evaluation after a "
                            "ladder change, at most the policy's downgrade steps down).")
        parser.add_argument("--batch-size", type=int, default=RECALCULATE_BATCH_SIZE, help="Members per transaction.")
        parser.add_argument("--workers", type=int, help="Batches run at once (default: 2 on PostgreSQL, 1 on SQLite).")

    def handle(self, *args, as_of, since, step, mode, batch_size, workers, verbosity, **options):
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        if workers is not None and workers < 1:
            raise CommandError("--workers must be at least 1.")
        final = end_of_day(as_of) if as_of else None  # None: live, counting everything recorded
        if final is not None and final > timezone.now():
            raise CommandError("--as-of cannot be in the future.")
        moments = [final]
        if since is not None:
            if as_of is not None and since > as_of:
                raise CommandError("--since must not be after --as-of.")
            moments, day = [], since
            delta = {"day": relativedelta(days=1), "week": relativedelta(weeks=1), "month": relativedelta(months=1)}
            while end_of_day(day) < (final or timezone.now()):
                moments.append(end_of_day(day))
                day += delta[step]
            moments.append(final)
        progress = self._progress if verbosity >= 1 and sys.stdout.isatty() else None
        started = time.perf_counter()
        for moment in moments:
            result = tiers_recalculate(
                as_of=moment, mode=mode, batch_size=batch_size, workers=workers, on_batch=progress
            )
            if progress:
                self.stdout.write("")
            changes = ", ".join(
                f"{RULE_LABELS.get(rule, rule)} {count:,}" for rule, count in sorted(result.changes.items())
            ) or "no changes"
            if verbosity >= 1 and (len(moments) == 1 or result.changes):
                when = "now" if moment is None else f"{timezone.localtime(moment):%Y-%m-%d %H:%M:%S}"
                self.stdout.write(f"As of {when}: {changes}; "
                                  f"window sums refreshed for {result.refreshed:,} members.")
        self.stdout.write(f"Done in {time.perf_counter() - started:.1f} s.")

    def _progress(self, progress):
        share = progress.done_members / max(progress.total_members, 1)
        bar = "#" * int(share * 30)
        self.stdout.write(f"\r[{bar:<30}] {share:6.1%}", ending="")
        self.stdout.flush()
