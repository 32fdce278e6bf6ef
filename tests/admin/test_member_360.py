"""The member 360 on the member page (campaigns.dashboard.member_360): header, quick actions to the existing actions'
confirmation pages, and one timeline merging orders, ledger entries, tier changes, coupons, badges and messages,
newest first, capped, at a query count that does not grow with the history."""
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from campaigns.dashboard import TIMELINE_ITEMS, member_timeline
from campaigns.engagement.models import Badge, Coupon, MemberBadge
from campaigns.engagement.services import coupon_grant
from campaigns.messaging.models import Message
from members.models import Order
from points.models import PointsTransaction
from tiers.models import Tier, TierChange

pytestmark = pytest.mark.django_db


def page_url(member):
    return f"/admin/members/member/{member.pk}/change/"


@pytest.fixture
def shopper(member_factory, order_factory):
    """Li Na: one order of 1,200.00 (a ledger credit, Silver, the first-order badge), then a coupon and a message."""
    member = member_factory(external_id="c-1001", name="Li Na")
    order_factory(order_id="A-1", customer_id=member.external_id, amount=Decimal("1200.00"),
                  placed_at=timezone.now() - timedelta(hours=3))
    coupon_grant(member=member, kind=Coupon.Kind.AMOUNT, value=Decimal("20"), source="welcome")
    Message.objects.create(member=member, channel="email", template_code="tier_up", language="en",
                           subject="You are Silver now", idempotency_key="m:1")
    member.refresh_from_db()
    return member


def test_the_timeline_merges_every_source_newest_first(shopper):
    timeline = member_timeline(shopper)

    assert {entry.source for entry in timeline} == {"orders", "points", "tiers", "coupons", "badges", "messages"}
    assert [entry.at for entry in timeline] == sorted((entry.at for entry in timeline), reverse=True)
    assert timeline[-1].source == "orders"  # placed three hours ago: the oldest event
    titles = [entry.title for entry in timeline]
    assert "Order A-1: 1200.00 CNY" in titles
    assert "+1,200 points: earned from an order" in titles
    assert "Member → Silver" in titles
    assert "email: tier_up" in titles


def add_long_history(member, rows=60):
    """`rows` entries in every source for `member`, a minute apart from a minute ago, the six sources in turn."""
    tiers = list(Tier.objects.order_by("rank"))
    now = timezone.now()
    moments = [now - timedelta(minutes=n + 1) for n in range(6 * rows)]
    Order.objects.bulk_create([
        Order(order_id=f"L-{member.pk}-{n}", member=member, placed_at=moments[6 * n], amount=Decimal("10"),
              currency="CNY")
        for n in range(rows)
    ])
    PointsTransaction.objects.bulk_create([
        PointsTransaction(member=member, kind=PointsTransaction.Kind.BONUS, amount=5, remaining=0,
                          created_at=moments[6 * n + 1], idempotency_key=f"L:{member.pk}:{n}")
        for n in range(rows)
    ])
    TierChange.objects.bulk_create([
        TierChange(member=member, from_tier=tiers[0], to_tier=tiers[1], reason=TierChange.Reason.UPGRADE,
                   created_at=moments[6 * n + 2])
        for n in range(rows)
    ])
    Coupon.objects.bulk_create([
        Coupon(code=f"L{member.pk}C{n:04d}", member=member, kind=Coupon.Kind.FREE_SHIPPING,
               created_at=moments[6 * n + 3])
        for n in range(rows)
    ])
    badges = Badge.objects.bulk_create([
        Badge(code=f"b{member.pk}-{n}", name=f"Badge {n}", criterion=Badge.Criterion.ORDERS, threshold=n + 100)
        for n in range(rows)
    ])
    MemberBadge.objects.bulk_create([
        MemberBadge(member=member, badge=badge, awarded_at=moments[6 * n + 4]) for n, badge in enumerate(badges)
    ])
    Message.objects.bulk_create([
        Message(member=member, channel="sms", template_code="news", language="en",
                idempotency_key=f"L:{member.pk}:m:{n}", created_at=moments[6 * n + 5])
        for n in range(rows)
    ])


@pytest.fixture
def long_history(member_factory):
    member = member_factory(external_id="c-long")  # registered now: its "joined" tier change is the newest event
    add_long_history(member)
    return member


def test_a_long_history_shows_the_newest_fifty_events_of_all_sources_together(long_history):
    timeline = member_timeline(long_history)

    assert len(timeline) == TIMELINE_ITEMS == 50
    # The join, then the newest 49 of 360 events a minute apart: the six sources in turn, orders first.
    assert [entry.source for entry in timeline[:8]] == [
        "tiers", "orders", "points", "tiers", "coupons", "badges", "messages", "orders"
    ]
    assert timeline[0].status == "joined"
    assert [entry.at for entry in timeline] == sorted((entry.at for entry in timeline), reverse=True)
    assert timezone.now() - timeline[-1].at < timedelta(minutes=51)


def page_queries(client, member) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(page_url(member))
    assert response.status_code == 200
    return len(queries)


def test_the_member_page_costs_the_same_queries_for_a_short_and_a_long_history(admin_client, shopper):
    admin_client.get(page_url(shopper))  # warm what every request shares
    short = page_queries(admin_client, shopper)

    add_long_history(shopper, rows=120)

    assert page_queries(admin_client, shopper) == short


def test_the_member_page_shows_the_header_and_the_timeline(admin_client, shopper):
    html = admin_client.get(page_url(shopper)).content.decode()

    assert 'id="member-360"' in html
    assert 'data-figure="balance">1,200<' in html
    assert "To Gold" in html  # the progress bar to the next tier
    assert html.count('data-timeline-source="') == len(member_timeline(shopper))
    assert 'data-timeline-source="coupons"' in html


def test_the_add_page_has_no_member_360(admin_client):
    response = admin_client.get("/admin/members/member/add/")

    assert response.status_code == 200
    assert 'id="member-360"' not in response.content.decode()


def test_the_more_links_open_each_changelist_filtered_to_the_member(admin_client, shopper, member_factory):
    other = member_factory(external_id="c-other")
    Message.objects.create(member=other, channel="email", template_code="other_news", language="en",
                           idempotency_key="m:other")
    html = admin_client.get(page_url(shopper)).content.decode()
    links = {
        source: html.split(f'data-more="{source}"')[0].rsplit('href="', 1)[1].split('"')[0].replace("&amp;", "&")
        for source in ("orders", "points", "tiers", "coupons", "badges", "messages")
    }

    for url in links.values():
        response = admin_client.get(url)
        assert response.status_code == 200, url  # not the "?e=1" redirect of a refused lookup
    messages = admin_client.get(links["messages"]).content.decode()
    assert "tier_up" in messages and "other_news" not in messages


@pytest.mark.parametrize("action, heading", [
    ("adjust_points", "Adjust points"), ("override_tier", "Set tier by hand"), ("grant_coupon", "Grant a coupon"),
    ("send_message", "Send a message"),
])
def test_a_quick_action_opens_the_actions_confirmation_page_for_this_member_only(admin_client, shopper, action,
                                                                                 heading, member_factory):
    member_factory(external_id="c-bystander")
    balance = shopper.points_balance

    response = admin_client.post("/admin/members/member/",
                                 {"action": action, "_selected_action": [shopper.pk], "index": 0})

    html = response.content.decode()
    assert response.status_code == 200
    assert heading in html
    assert "1 members selected" in html
    assert "c-bystander" not in html
    shopper.refresh_from_db()
    assert shopper.points_balance == balance  # a confirmation page changes nothing


def test_granting_a_coupon_from_the_member_page_records_the_staff_user(admin_client, admin_user, shopper):
    data = {"action": "grant_coupon", "_selected_action": [shopper.pk], "index": 0, "confirmed": "yes",
            "kind": Coupon.Kind.AMOUNT, "value": "15", "min_spend": "100", "valid_days": "30",
            "reason": "parcel late", "token": "t-1"}

    admin_client.post("/admin/members/member/", data)
    admin_client.post("/admin/members/member/", data)  # a double submit grants once

    coupon = Coupon.objects.get(member=shopper, source="admin: parcel late")
    assert (coupon.value, coupon.min_spend, coupon.created_by) == (Decimal("15.00"), Decimal("100.00"), admin_user)
    assert coupon.valid_until - coupon.valid_from == timedelta(days=30)


def test_sending_a_message_from_the_member_page_queues_one_from_the_template(admin_client, admin_user, shopper):
    data = {"action": "send_message", "_selected_action": [shopper.pk], "index": 0, "confirmed": "yes",
            "template_code": "welcome", "channel": "", "token": "t-1"}

    admin_client.post("/admin/members/member/", data)
    admin_client.post("/admin/members/member/", data)  # a double submit queues once

    message = Message.objects.get(member=shopper, source=f"admin: {admin_user.get_username()}")
    assert message.template_code == "welcome"


def test_a_user_who_may_only_view_members_gets_no_quick_actions_and_only_the_sources_they_may_see(client, shopper):
    staff = User.objects.create_user("viewer", password="x", is_staff=True)
    for app, codename in (("members", "view_member"), ("members", "view_order")):
        staff.user_permissions.add(Permission.objects.get(content_type__app_label=app, codename=codename))
    client.force_login(staff)

    html = client.get(page_url(shopper)).content.decode()

    assert 'id="member-360"' in html
    assert 'id="member-360-actions"' not in html
    assert 'data-timeline-source="orders"' in html
    assert 'data-timeline-source="points"' not in html
    assert 'data-more="points"' not in html
