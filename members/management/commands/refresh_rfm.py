"""`manage.py refresh_rfm [--batch-size N]`: RFM scores, segments and activity statuses of every member now (also
the nightly scheduled job members.refresh_rfm, and queued after every order import). Run it once after upgrading to
the release that added RFM, so statuses are right before the first night."""
import time

from django.core.management.base import BaseCommand, CommandError

from members.rfm import DEFAULT_BATCH_SIZE, rfm_refresh


class Command(BaseCommand):
    help = "Score every member's recency, frequency and spend (quintiles), name their RFM segment, set their activity."

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="Members per transaction.")

    def handle(self, *args, batch_size, **options):
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        started = time.perf_counter()
        result = rfm_refresh(batch_size=batch_size)
        self.stdout.write(
            f"{result.members} members, {result.scored} with orders scored, {result.updated} changed "
            f"in {time.perf_counter() - started:.1f} s."
        )
