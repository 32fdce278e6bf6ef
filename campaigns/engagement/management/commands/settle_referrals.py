from datetime import timedelta

from django.core.management.base import BaseCommand

from campaigns.engagement.services import referrals_settle


class Command(BaseCommand):
    help = "Credit the referrers of rewarded referrals whose credit has not landed (a worker died in between)."

    def add_arguments(self, parser):
        parser.add_argument("--older-than-minutes", type=int, default=5)

    def handle(self, *args, older_than_minutes, **options):
        settled = referrals_settle(older_than=timedelta(minutes=older_than_minutes))
        self.stdout.write(self.style.SUCCESS(f"{settled:,} referrals settled."))
