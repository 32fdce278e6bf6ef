"""Send the queued messages that are due now: what beat runs every minute (messaging.send_due_messages). Useful on
the local demo, which has no beat: messages deferred by the quiet hours wait for this."""
from django.core.management.base import BaseCommand

from campaigns.messaging.services import messages_send_due


class Command(BaseCommand):
    help = "Send the queued messages that are due now (never during the quiet hours)."

    def handle(self, *args, **options):
        result = messages_send_due(time_budget=float("inf"))
        self.stdout.write(
            f"sent {result.sent}, retrying {result.retrying}, failed {result.failed}, skipped {result.skipped}"
        )
