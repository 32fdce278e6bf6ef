"""members.privacy: the export of a member's data and the anonymisation that keeps the books."""
import json
from decimal import Decimal

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from campaigns.engagement.models import Badge
from campaigns.engagement.services import checkin_record, coupon_grant
from campaigns.messaging.models import Message
from members.console.audit import audit_record
from members.console.models import AuditEntry
from members.errors import InvalidInput
from members.models import Member, Tag
from members.privacy import member_anonymise, member_export
from members.services import member_register, order_refund
from points.selectors import ledger_mismatches, points_liability
from points.services import points_earn
from tiers.models import GrowthEvent, TierChange

pytestmark = pytest.mark.django_db

SECTIONS = {
    "format_version", "exported_at", "profile", "consents", "status", "tags", "orders",
    "tier", "points", "engagement", "messages",
}


def _message(member, n=1, status=Message.Status.SENT):
    return Message.objects.create(
        member=member, channel="email", template_code="welcome", language="en", recipient=member.email,
        subject=f"Hello {member.name}", body=f"Dear {member.name}, welcome", status=status,
        sent_at=timezone.now() if status == Message.Status.SENT else None, idempotency_key=f"msg-{member.pk}-{n}",
    )


@pytest.fixture
def busy_member(member_factory, order_factory):
    """A member with something in every section: orders and a refund, points, tier history, growth, a coupon, a
    check-in, a badge, a referral, a tag and a sent message."""
    Badge.objects.update_or_create(code="first-order", defaults={"name": "First order", "criterion": "orders",
                                                                 "threshold": 1, "active": True})
    member = member_factory(name="王芳", email="wangfang@example.cn", phone="13800000001", region="Shanghai",
                            email_opt_in=True, sms_opt_in=True)
    for n in range(3):
        order_factory(customer_id=member.external_id, order_id=f"o-{n}", amount=Decimal("1000.00"))
    order_refund(order_id="o-0", refund_id="r-0", amount=Decimal("100.00"))
    coupon_grant(member=member, kind="amount", value=10, source="test")
    checkin_record(member=member)
    member_register(external_id="friend-1", referral_code=member.referral_code)
    member.tags.add(Tag.objects.create(name="VIP"))
    _message(member)
    member.refresh_from_db()
    return member


def test_export_has_every_section_and_is_json(busy_member):
    export = member_export(member=busy_member)

    assert set(export) == SECTIONS
    json.dumps(export)  # plain JSON, no Decimal or datetime left
    assert export["profile"]["email"] == "wangfang@example.cn"
    assert export["consents"]["email_opt_in"] is True
    assert export["tags"] == ["VIP"]
    assert [o["order_id"] for o in export["orders"]] == ["o-0", "o-1", "o-2"]
    assert export["orders"][0]["amount"] == "1000.00"
    assert export["orders"][0]["refunds"][0]["refund_id"] == "r-0"
    assert export["tier"]["changes"] and export["tier"]["growth_events"]
    assert {t["kind"] for t in export["points"]["transactions"]} >= {"earn"}
    assert sum(t["amount"] for t in export["points"]["transactions"]) == (
        busy_member.points_balance + busy_member.points_pending - busy_member.points_debt
    )
    assert export["engagement"]["coupons"][0]["value"] == "10.00"
    assert len(export["engagement"]["check_ins"]) == 1
    assert export["engagement"]["badges"][0]["code"] == "first-order"
    assert len(export["engagement"]["referrals"]["sent"]) == 1
    assert export["messages"][0]["body"] == "Dear 王芳, welcome"
    assert export["messages"][0]["sent_at"]


def test_export_runs_as_many_queries_for_50_orders_as_for_10(member_factory, order_factory):
    small, large = member_factory(), member_factory()
    for member, orders in ((small, 10), (large, 50)):
        for n in range(orders):
            order_factory(customer_id=member.external_id, order_id=f"{member.pk}-{n}")
            _message(member, n)
        order_refund(order_id=f"{member.pk}-0", refund_id=f"r-{member.pk}", amount=Decimal("1.00"))

    with CaptureQueriesContext(connection) as few:
        member_export(member=small)
    with CaptureQueriesContext(connection) as many:
        export = member_export(member=large)

    assert len(export["orders"]) == 50
    assert len(many) == len(few)


def test_anonymise_blanks_personal_data_and_keeps_the_books(busy_member, admin_user):
    before_liability = points_liability()
    before = (busy_member.points_balance, busy_member.points_pending, busy_member.points_debt,
              busy_member.lifetime_spend, busy_member.tier_id, busy_member.growth_value)
    counts = (busy_member.points_transactions.count(), busy_member.orders.count(),
              TierChange.objects.filter(member=busy_member).count(),
              GrowthEvent.objects.filter(member=busy_member).count())

    assert member_anonymise(member=busy_member, user=admin_user, reason="GDPR request 17") is True

    member = Member.objects.get(pk=busy_member.pk)
    assert member.external_id == f"anonymised-{member.pk}"
    assert (member.email, member.phone, member.name, member.birthday, member.region) == ("", "", "", None, "")
    assert (member.email_opt_in, member.sms_opt_in) == (False, False)
    assert (member.is_blocked, member.blocked_reason) == (True, "anonymised")
    assert not member.tags.exists()
    assert list(Message.objects.filter(member=member).values_list("recipient", "subject", "body")) == [("", "", "")]
    assert (member.points_balance, member.points_pending, member.points_debt, member.lifetime_spend,
            member.tier_id, member.growth_value) == before
    assert (member.points_transactions.count(), member.orders.count(),
            TierChange.objects.filter(member=member).count(),
            GrowthEvent.objects.filter(member=member).count()) == counts
    assert ledger_mismatches() == {}
    call_command("check_ledger")  # exits non-zero (raises) on a mismatch
    after_liability = points_liability()
    assert (after_liability.available, after_liability.pending, after_liability.issued) == (
        before_liability.available, before_liability.pending, before_liability.issued
    )
    assert LogEntry.objects.filter(object_id=str(member.pk), user=admin_user,
                                   change_message="Anonymised: GDPR request 17").exists()


def test_anonymised_export_holds_no_personal_data(busy_member):
    member_anonymise(member=busy_member, reason="request")

    text = json.dumps(member_export(member=busy_member), ensure_ascii=False)

    for personal in ("wangfang@example.cn", "13800000001", "王芳", "Shanghai", "VIP"):
        assert personal not in text


def test_anonymise_skips_queued_messages(member):
    queued = _message(member, status=Message.Status.QUEUED)

    member_anonymise(member=member, reason="request")

    queued.refresh_from_db()
    assert (queued.status, queued.skip_reason, queued.recipient) == ("skipped", "blocked", "")


def test_anonymise_twice_changes_nothing_the_second_time(busy_member, admin_user):
    member_anonymise(member=busy_member, user=admin_user, reason="first")
    updated_at = Member.objects.get(pk=busy_member.pk).updated_at

    assert member_anonymise(member=busy_member, user=admin_user, reason="second") is False
    assert Member.objects.get(pk=busy_member.pk).updated_at == updated_at
    assert LogEntry.objects.filter(object_id=str(busy_member.pk), change_message__startswith="Anonymised").count() == 1


def test_the_old_storefront_id_registers_a_new_member_after_anonymisation(busy_member):
    old_id = busy_member.external_id
    member_anonymise(member=busy_member, reason="request")

    new_member, created = member_register(external_id=old_id, email="someone@example.com")

    assert created and new_member.pk != busy_member.pk
    assert new_member.points_balance == 0


def test_an_anonymised_member_earns_nothing_more(member):
    member_anonymise(member=member, reason="request")

    from points.errors import MemberBlocked

    with pytest.raises(MemberBlocked):
        points_earn(member=member, amount=10, idempotency_key="after")


def test_anonymise_needs_a_reason(member):
    with pytest.raises(InvalidInput):
        member_anonymise(member=member, reason="  ")

    member.refresh_from_db()
    assert not member.is_blocked


def test_anonymise_redacts_the_members_audit_entries_and_keeps_who_and_when(busy_member, admin_user):
    # A staff edit of the member recorded the old and new email, and the member's name as the object.
    entry = audit_record(obj=busy_member, action=AuditEntry.Action.CHANGE, actor=admin_user,
                         changes={"email": ["old@example.cn", "wangfang@example.cn"]}, note="asked by 王芳")

    member_anonymise(member=busy_member, user=admin_user, reason="GDPR request 17")

    entry.refresh_from_db()
    assert "王芳" not in entry.object_repr and "example.cn" not in str(entry.changes) and "王芳" not in entry.note
    assert list(entry.changes) == ["email"]
    assert (entry.actor, entry.action, entry.object_id) == (admin_user, AuditEntry.Action.CHANGE, str(busy_member.pk))


def test_anonymise_takes_the_members_name_out_of_the_admin_history(busy_member, admin_user):
    LogEntry.objects.log_actions(user_id=admin_user.pk, queryset=[busy_member], action_flag=CHANGE,
                                 change_message="Changed email.", single_object=True)

    member_anonymise(member=busy_member, user=admin_user, reason="GDPR request 17")

    reprs = LogEntry.objects.filter(object_id=str(busy_member.pk)).values_list("object_repr", flat=True)
    assert reprs and not any("王芳" in text for text in reprs)
