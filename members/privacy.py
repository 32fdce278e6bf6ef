"""Privacy: a member's data as JSON (the right of access) and anonymisation (the right to erasure).

Both are assembled through registries so this lowest app imports none of the higher ones:

- `settings.LOYALTY_PRIVACY_SECTIONS`: functions `(member) -> (section_name, data)`, one per higher app (points
  ledger and redemptions, tier history and growth, coupons/check-ins/badges/referrals, messages). Each runs a fixed
  number of `.values()` queries, so an export costs the same number of queries whatever the member's history.
- `settings.LOYALTY_PRIVACY_ANONYMISERS`: functions `(member) -> None` that erase the personal data a higher app
  copied (campaigns.messaging blanks the recipient, subject and body of the member's messages).

Anonymisation keeps the books: the points ledger, orders and refunds (amounts, dates), tier changes and growth
events stay, so check_ledger, the points liability and the sales reports read the same before and after. What goes
is what names the person: email, phone, name, birthday, region, marketing consents, tags, message contents, and the
values and object names in the admin's histories of the member (the audit log keeps who changed what, when). The
member is blocked ("anonymised") so nothing more is earned or spent, and their storefront id becomes
`anonymised-<member pk>`: the shop no longer finds them by the old id, and a new sign-up with the old id creates a
new, unrelated member. A second call is a no-op.
"""
import json
import logging

from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from members.webhooks import services as webhooks

from .console.audit import audit_redact
from .errors import InvalidInput
from .hooks import configured_hooks
from .locking import member_lock
from .models import Member, Order, OrderRefund

logger = logging.getLogger("loyalty.privacy")

ANONYMISED_REASON = "anonymised"
EXPORT_FORMAT_VERSION = 1


def anonymised_external_id(member: Member) -> str:
    return f"anonymised-{member.pk}"


def member_is_anonymised(member: Member) -> bool:
    return member.external_id == anonymised_external_id(member)


def _jsonable(data):
    """Decimals as strings, dates and datetimes in ISO 8601: what json.dumps of the result needs."""
    return json.loads(json.dumps(data, cls=DjangoJSONEncoder))


def _member_sections(member: Member) -> dict:
    """This app's own sections: profile, consents, status and RFM, tags, orders with their refunds."""
    orders = list(
        Order.objects.filter(member=member)
        .order_by("placed_at", "id")
        .values(
            "id", "order_id", "placed_at", "amount", "currency", "quantity", "category", "channel", "status",
            "refunded_amount", "points_earned", "growth_earned", "points_used", "created_at",
        )
    )
    refunds: dict[int, list] = {}
    for refund in (
        OrderRefund.objects.filter(order__member=member)
        .order_by("created_at", "id")
        .values("order_id", "refund_id", "amount", "points_clawed_back", "points_returned", "growth_clawed_back",
                "created_at")
    ):
        refunds.setdefault(refund.pop("order_id"), []).append(refund)
    for order in orders:
        order["refunds"] = refunds.get(order.pop("id"), [])
    return {
        "profile": {
            "external_id": member.external_id,
            "email": member.email,
            "phone": member.phone,
            "name": member.name,
            "birthday": member.birthday,
            "region": member.region,
            "joined_at": member.joined_at,
            "referral_code": member.referral_code,
            "created_at": member.created_at,
            "updated_at": member.updated_at,
        },
        "consents": {
            "email_opt_in": member.email_opt_in,
            "sms_opt_in": member.sms_opt_in,
            "consents_updated_at": member.consents_updated_at,
        },
        "status": {
            "is_blocked": member.is_blocked,
            "blocked_reason": member.blocked_reason,
            "points_balance": member.points_balance,
            "points_pending": member.points_pending,
            "points_debt": member.points_debt,
            "lifetime_spend": member.lifetime_spend,
            "order_count": member.order_count,
            "first_order_at": member.first_order_at,
            "last_order_at": member.last_order_at,
            "activity_status": member.activity_status,
            "rfm": {
                "recency": member.rfm_recency,
                "frequency": member.rfm_frequency,
                "monetary": member.rfm_monetary,
                "segment": member.rfm_segment or None,
                "updated_at": member.rfm_updated_at,
            },
        },
        "tags": list(member.tags.order_by("name").values_list("name", flat=True)),
        "orders": orders,
    }


def member_export(*, member: Member) -> dict:
    """Everything the programme holds about one member, JSON-serialisable (decimals as strings, ISO dates).

    Sections: profile, consents, status (balances, RFM), tags, orders (with refunds), then one or more per higher
    app from settings.LOYALTY_PRIVACY_SECTIONS (tier and history, growth events, points ledger, redemptions,
    coupons, check-ins, badges, referrals, engagement events, messages)."""
    export = {"format_version": EXPORT_FORMAT_VERSION, "exported_at": timezone.now(), **_member_sections(member)}
    for section in configured_hooks("LOYALTY_PRIVACY_SECTIONS"):
        name, data = section(member)
        export[name] = data
    return _jsonable(export)


def member_anonymise(*, member: Member, reason: str, user=None, actor: str = "") -> bool:
    """Erase what identifies the member, keep the books (see the module docstring). One transaction, member locked.

    `user` (staff) gets an admin LogEntry with the reason; an API call names its key in `actor`, which is logged
    (loyalty.privacy) with the reason. Returns False when the member was already anonymised (nothing changes)."""
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput(_("Give a reason for the anonymisation."), field="reason")
    with transaction.atomic():
        member_lock(member)
        if member_is_anonymised(member):
            return False
        now = timezone.now()
        storefront_id = member.external_id
        member.external_id = anonymised_external_id(member)
        member.email = ""
        member.phone = ""
        member.name = ""
        member.birthday = None
        member.region = ""
        member.email_opt_in = False
        member.sms_opt_in = False
        member.consents_updated_at = now
        member.is_blocked = True
        member.blocked_reason = ANONYMISED_REASON
        member.save(
            update_fields=[
                "external_id", "email", "phone", "name", "birthday", "region", "email_opt_in", "sms_opt_in",
                "consents_updated_at", "is_blocked", "blocked_reason", "updated_at",
            ]
        )
        member.tags.clear()
        # The admin's histories of the member name the person too: the audit log's values (its one allowed update,
        # console 0003) and Django's LogEntry object names. Who changed what, and when, stays.
        audit_redact(obj=member, object_repr=str(member))
        LogEntry.objects.filter(
            content_type=ContentType.objects.get_for_model(Member), object_id=str(member.pk)
        ).update(object_repr=str(member)[:200])
        for anonymiser in configured_hooks("LOYALTY_PRIVACY_ANONYMISERS"):
            anonymiser(member)
        webhooks.member_anonymised_emit(member=member, external_id=storefront_id)
        if user is not None and user.pk is not None:
            LogEntry.objects.log_actions(
                user_id=user.pk,
                queryset=[member],
                action_flag=CHANGE,
                change_message=f"Anonymised: {reason}",
                single_object=True,
            )
        logger.info("member %s anonymised by %s: %s", member.pk, actor or (user and user.get_username()) or "?", reason)
    return True
