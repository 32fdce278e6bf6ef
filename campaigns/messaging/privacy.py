"""The messages sent to a member: exported in full (members.privacy, LOYALTY_PRIVACY_SECTIONS) and blanked on
anonymisation (LOYALTY_PRIVACY_ANONYMISERS). The rows stay, so campaign reports still count what was sent; a message
still queued is skipped, since it has no one to go to."""
from .models import Message


def messages_privacy_section(member) -> tuple[str, list]:
    return "messages", list(
        Message.objects.filter(member=member)
        .order_by("created_at", "id")
        .values("channel", "template_code", "language", "marketing", "recipient", "subject", "body", "status",
                "skip_reason", "scheduled_at", "sent_at", "created_at")
    )


def messages_anonymise(member) -> None:
    """Blank what a message copied of the person; runs in the anonymisation's transaction, member locked."""
    Message.objects.filter(member=member, status=Message.Status.QUEUED).update(
        status=Message.Status.SKIPPED, skip_reason=Message.SkipReason.BLOCKED
    )
    Message.objects.filter(member=member).update(recipient="", subject="", body="")
