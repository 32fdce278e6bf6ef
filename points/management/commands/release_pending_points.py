"""`manage.py release_pending_points`: make pending points available once their return window has passed."""
from django.core.management.base import BaseCommand

from points.services import points_release_due


class Command(BaseCommand):
    help = "Release pending points whose return window has passed. Safe to run twice, or twice at once."

    def add_arguments(self, parser):
        parser.add_argument("--batch-members", type=int, default=500)

    def handle(self, *args, batch_members, **options):
        result = points_release_due(batch_members=batch_members)
        self.stdout.write(f"Released {result.points:,} points from {result.lots:,} lots of {result.members:,} members.")
