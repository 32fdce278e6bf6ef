"""`manage.py expire_points`: turn what remains of expired lots into EXPIRE debits (also a scheduled task)."""
import time

from django.core.management.base import BaseCommand

from points.services import points_expire_due


class Command(BaseCommand):
    help = "Expire the unspent points of every lot whose expiry has come. Safe to run twice, or twice at once."

    def add_arguments(self, parser):
        parser.add_argument("--batch-members", type=int, default=500, help="Members locked and expired per transaction.")

    def handle(self, *args, batch_members, **options):
        started = time.perf_counter()
        result = points_expire_due(batch_members=batch_members)
        self.stdout.write(
            f"Expired {result.points:,} points from {result.lots:,} lots of {result.members:,} members "
            f"in {time.perf_counter() - started:.1f} s."
        )
