"""The points ledger and redemptions of one member, for members.privacy.member_export (LOYALTY_PRIVACY_SECTIONS).
Anonymisation leaves both untouched: they are the books the liability report and check_ledger read."""
from .models import PointsTransaction, Redemption


def points_privacy_section(member) -> tuple[str, dict]:
    transactions = list(
        PointsTransaction.objects.filter(member=member)
        .order_by("created_at", "id")
        .values("kind", "amount", "remaining", "expires_at", "pending_until", "debt_delta", "reference", "note",
                "created_at")
    )
    redemptions = list(
        Redemption.objects.filter(member=member)
        .order_by("created_at", "id")
        .values("reward__code", "reward__name", "quantity", "points", "status", "voucher_code", "created_at",
                "cancelled_at", "cancel_reason")
    )
    for redemption in redemptions:
        redemption["reward"] = {"code": redemption.pop("reward__code"), "name": redemption.pop("reward__name")}
    return "points", {"transactions": transactions, "redemptions": redemptions}
