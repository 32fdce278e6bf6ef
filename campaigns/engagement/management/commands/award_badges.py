from django.core.management.base import BaseCommand

from campaigns.engagement.services import BADGE_BACKFILL_BATCH, badges_award_all


class Command(BaseCommand):
    help = "Award every member the active badges they meet (set-based, in batches of member ids; sends nothing)."

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=BADGE_BACKFILL_BATCH, help="Member ids per statement.")

    def handle(self, *args, batch_size, **options):
        awarded = badges_award_all(batch_size=batch_size)
        self.stdout.write(self.style.SUCCESS(f"{awarded:,} badges awarded."))
