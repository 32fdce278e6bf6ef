"""The operator dashboard (campaigns.dashboard): every chart's figures on a known data set, the CSV download (escaped,
staff only, by permission), the index's permissions, and a query count that does not grow with the data."""
import csv
import io
from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from campaigns.dashboard import CHARTS, Period, outstanding_liability
from campaigns.models import Campaign, CampaignGrant
from members.models import ActivityStatus, Member, Order
from points.models import Reward
from points.services import points_adjust, points_earn, points_expire_due, reward_redeem
from tiers.models import Tier, TierChange

pytestmark = pytest.mark.django_db

Q1 = Period(start=date(2026, 1, 1), end=date(2026, 3, 31))


def at(year, month, day, hour=12, minute=0):
    """A moment in the site's time zone (Asia/Shanghai by default)."""
    return timezone.make_aware(datetime(year, month, day, hour, minute))


def rows(name, period=Q1):
    return CHARTS[name].rows(period)


def monthly(name, *keys, period=Q1):
    return [(row["month"].strftime("%Y-%m"), *(row[key] for key in keys)) for row in rows(name, period)]


@pytest.fixture
def shop():
    """Four members and their orders in and around the first quarter of 2026 (rows written directly: this tests
    reads, and the members' aggregates are set to what the orders say)."""
    entry, silver = Tier.objects.get(code="member"), Tier.objects.get(code="silver")
    a, b, c, d = Member.objects.bulk_create([
        Member(external_id="A", referral_code="REFA", tier=silver, region="Shanghai", joined_at=at(2025, 12, 10),
               lifetime_spend=Decimal("300"), order_count=3, first_order_at=at(2025, 12, 15),
               activity_status=ActivityStatus.ACTIVE),
        Member(external_id="B", referral_code="REFB", tier=entry, region="Beijing", joined_at=at(2026, 1, 5),
               lifetime_spend=Decimal("200"), order_count=2, first_order_at=at(2026, 1, 10),
               activity_status=ActivityStatus.DORMANT),
        Member(external_id="C", referral_code="REFC", tier=entry, region="Shanghai", joined_at=at(2026, 1, 20),
               activity_status=ActivityStatus.NO_PURCHASE),
        # Joined at 00:30 on 2 March in Shanghai: still 1 March in UTC, counted in March all the same.
        Member(external_id="D", referral_code="REFD", tier=entry, region="", joined_at=at(2026, 3, 2, 0, 30),
               lifetime_spend=Decimal("100"), order_count=1, first_order_at=at(2026, 3, 3),
               activity_status=ActivityStatus.ACTIVE),
    ])
    paid, Status = Order.Status.PAID, Order.Status
    orders = [
        (a, at(2025, 12, 15), "100", paid),  # before the period
        (a, at(2026, 1, 12), "100", paid),  # January: A had bought before (December) — a repeat buyer
        (b, at(2026, 1, 10), "120", paid),  # January: B's first order
        (b, at(2026, 1, 25), "80", paid),  # B again in January: still one buyer, not a repeat buyer that month
        (a, at(2026, 2, 3), "100", Status.CANCELLED),  # not a purchase
        (b, at(2026, 2, 10), "50", Status.REFUNDED),  # not a purchase
        (d, at(2026, 3, 3), "100", Status.PARTIALLY_REFUNDED),  # March: D's first order
        (a, at(2026, 3, 20), "60", paid),  # March: A repeat
        (a, at(2026, 4, 1, 0, 30), "999", paid),  # 1 April in Shanghai: after the period
    ]
    Order.objects.bulk_create([
        Order(order_id=f"O-{n}", member=member, placed_at=placed_at, amount=Decimal(amount), currency="CNY",
              status=status)
        for n, (member, placed_at, amount, status) in enumerate(orders)
    ])
    return {"A": a, "B": b, "C": c, "D": d, "entry": entry, "silver": silver}


def test_new_members_per_month_are_zero_filled_and_read_in_the_site_time_zone(shop):
    assert monthly("new-members", "members") == [("2026-01", 2), ("2026-02", 0), ("2026-03", 1)]


def test_members_by_tier_follow_the_ladder(shop):
    assert [(row["tier"], row["members"]) for row in rows("members-by-tier")] == [("Member", 3), ("Silver", 1)]


def test_members_by_activity_list_every_status(shop):
    assert [(row["code"], row["members"]) for row in rows("activity")] == [
        ("active", 2), ("dormant", 1), ("churn_risk", 0), ("no_purchase", 1)
    ]


def test_repurchase_rate_is_the_share_of_a_months_buyers_who_had_bought_before_it(shop):
    assert monthly("repurchase-rate", "buyers", "repeat_buyers", "rate") == [
        ("2026-01", 2, 1, Decimal("50.0")),
        ("2026-02", 0, 0, None),  # the cancelled and the refunded order are no purchases
        ("2026-03", 2, 1, Decimal("50.0")),
    ]


def test_average_order_value_counts_paid_and_partially_refunded_orders_per_month(shop):
    assert monthly("order-value", "orders", "revenue", "average") == [
        ("2026-01", 3, Decimal("300.00"), Decimal("100.00")),
        ("2026-02", 0, Decimal("0.00"), None),
        ("2026-03", 2, Decimal("160.00"), Decimal("80.00")),
    ]


def test_lifetime_value_is_the_average_lifetime_spend_by_tier(shop):
    assert [(row["tier"], row["members"], row["average_spend"]) for row in rows("lifetime-value-by-tier")] == [
        ("Member", 3, Decimal("100.00")),  # (200 + 0 + 100) / 3
        ("Silver", 1, Decimal("300.00")),
    ]


def test_lifetime_value_by_region_lists_the_regions_with_most_members_first(shop):
    assert [(row["region"], row["members"], row["average_spend"]) for row in rows("lifetime-value-by-region")] == [
        ("Shanghai", 2, Decimal("150.00")),
        ("—", 1, Decimal("100.00")),
        ("Beijing", 1, Decimal("200.00")),
    ]


def test_tier_moves_per_month_count_upgrades_downgrades_renewals_and_the_rest(shop):
    entry, silver, a, b = shop["entry"], shop["silver"], shop["A"], shop["B"]
    Reason = TierChange.Reason
    TierChange.objects.bulk_create([
        TierChange(member=a, from_tier=entry, to_tier=silver, reason=Reason.UPGRADE, created_at=at(2026, 1, 12)),
        TierChange(member=b, from_tier=entry, to_tier=silver, reason=Reason.UPGRADE, created_at=at(2026, 1, 25)),
        TierChange(member=b, from_tier=silver, to_tier=entry, reason=Reason.DOWNGRADE, created_at=at(2026, 2, 1)),
        TierChange(member=a, from_tier=silver, to_tier=silver, reason=Reason.RENEWAL, created_at=at(2026, 3, 1)),
        TierChange(member=a, from_tier=silver, to_tier=silver, reason=Reason.OVERRIDE, created_at=at(2026, 3, 2)),
        TierChange(member=a, from_tier=silver, to_tier=entry, reason=Reason.DOWNGRADE, created_at=at(2026, 4, 2)),
    ])

    assert monthly("tier-moves", "upgrades", "downgrades", "renewals", "other") == [
        ("2026-01", 2, 0, 0, 0), ("2026-02", 0, 1, 0, 0), ("2026-03", 0, 0, 1, 1),
    ]


def test_campaign_results_count_reach_and_conversion_in_each_campaigns_window_against_control(shop):
    launched = Campaign.objects.create(name="Spring bonus", kind=Campaign.Kind.BONUS_POINTS,
                                       status=Campaign.Status.RUNNING, launched_at=at(2026, 2, 1), conversion_days=7)
    later = Campaign.objects.create(name="May bonus", kind=Campaign.Kind.BONUS_POINTS, status=Campaign.Status.RUNNING,
                                    launched_at=at(2026, 5, 1), conversion_days=7)
    CampaignGrant.objects.bulk_create([
        CampaignGrant(campaign=launched, member=shop["A"], points=10, granted_at=at(2026, 3, 15)),  # order 20 Mar
        CampaignGrant(campaign=launched, member=shop["C"], points=10, granted_at=at(2026, 3, 15)),  # no order
        CampaignGrant(campaign=launched, member=shop["B"], is_control=True, granted_at=at(2026, 1, 5)),  # 10 Jan
        CampaignGrant(campaign=launched, member=shop["D"], is_control=True, granted_at=at(2026, 3, 10)),  # before
        CampaignGrant(campaign=later, member=shop["A"], points=10, granted_at=at(2026, 5, 1)),
    ])

    assert rows("campaigns") == [{
        "campaign": "Spring bonus", "reached": 2, "converted": 1, "conversion": Decimal("50.0"),
        "control": 2, "control_converted": 1, "control_conversion": Decimal("50.0"),
    }]


def test_points_per_month_and_the_outstanding_liability_follow_the_ledger(member_factory):
    member = member_factory()
    points_earn(member=member, amount=500, idempotency_key="t:bonus")
    points_earn(member=member, amount=100, idempotency_key="t:short", expires_at=timezone.now() + timedelta(seconds=1))
    points_expire_due(now=timezone.now() + timedelta(minutes=1))
    Reward.objects.create(code="mug", name="Mug", points_cost=100)
    reward_redeem(member=member, reward_code="mug", idempotency_key="t:mug")
    points_adjust(member=member, amount=-50, reason="correction", created_by=None, idempotency_key="t:adj")
    today = timezone.localdate()
    # Through tomorrow: the expiry is dated at the job's "now", a minute ahead.
    months = rows("points", period=Period(start=today, end=today + timedelta(days=1)))

    totals = {key: sum(row[key] for row in months) for key in ("issued", "redeemed", "expired")}
    assert totals == {"issued": 600, "redeemed": 100, "expired": 100}  # the negative adjustment is none of the three
    liability = outstanding_liability()
    assert (liability.available, liability.pending, liability.outstanding) == (350, 0, 350)
    assert liability.value == Decimal(350) * liability.point_value


def test_a_period_from_the_query_string_defaults_to_the_last_twelve_whole_months():
    today = date(2026, 11, 29)

    assert Period.from_query({}, today) == Period(date(2025, 12, 1), today, "12m")
    assert Period.from_query({"preset": "30d"}, today) == Period(date(2026, 10, 31), today, "30d")
    assert Period.from_query({"preset": "90d"}, today).start == date(2026, 9, 1)
    assert Period.from_query({"preset": "ytd"}, today).start == date(2026, 1, 1)
    assert Period.from_query({"from": "2026-03-31", "to": "2026-01-01"}, today) == Q1  # swapped ends
    assert Period.from_query({"from": "2026-02-30", "to": "x"}, today).preset == "12m"  # unreadable: the default


# --- The CSV download ------------------------------------------------------------------------------------------------


def csv_rows(response):
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    return list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))


def test_a_charts_csv_has_its_headings_and_the_periods_rows(admin_client, shop):
    response = admin_client.get("/admin/dashboard/order-value.csv", {"from": "2026-01-01", "to": "2026-03-31"})

    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="dashboard-order-value-20260101-20260331.csv"'
    assert csv_rows(response) == [
        ["month", "paid orders", "revenue", "average order value"],
        ["2026-01", "3", "300.00", "100.00"],
        ["2026-02", "0", "0.00", ""],
        ["2026-03", "2", "160.00", "80.00"],
    ]


def test_csv_cells_that_a_spreadsheet_would_run_as_formulas_are_escaped(admin_client, shop):
    Member.objects.filter(external_id="B").update(region='=HYPERLINK("http://evil.example","x")')

    table = csv_rows(admin_client.get("/admin/dashboard/lifetime-value-by-region.csv"))

    assert ["'=HYPERLINK(\"http://evil.example\",\"x\")", "1", "200.00"] in table


def test_the_csv_download_sends_anonymous_visitors_and_non_staff_users_to_the_login_page(client, shop):
    assert client.get("/admin/dashboard/members-by-tier.csv").status_code == 302
    customer = User.objects.create_user("customer", password="x")
    client.force_login(customer)

    response = client.get("/admin/dashboard/members-by-tier.csv")

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_the_csv_download_needs_the_charts_view_permission(client, shop):
    staff = User.objects.create_user("staff", password="x", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_member", content_type__app_label="members"))
    client.force_login(staff)

    assert client.get("/admin/dashboard/members-by-tier.csv").status_code == 200
    assert client.get("/admin/dashboard/points.csv").status_code == 403


def test_an_unknown_chart_is_not_found(admin_client):
    assert admin_client.get("/admin/dashboard/nothing.csv").status_code == 404


# --- The index ------------------------------------------------------------------------------------------------------


def test_the_index_shows_the_kpis_and_a_canvas_and_csv_link_per_chart(admin_client, shop):
    response = admin_client.get("/admin/", {"from": "2026-01-01", "to": "2026-03-31"})

    html = response.content.decode()
    assert response.status_code == 200
    assert 'data-kpi="members">4<' in html
    assert 'data-kpi="active-share">50.0%<' in html
    assert 'data-kpi="average-order-value">92.00<' in html  # 460.00 over 5 paid orders
    for name in CHARTS:
        assert f'href="/admin/dashboard/{name}.csv?from=2026-01-01&amp;to=2026-03-31"' in html
    assert html.count('<canvas class="chart"') == len(CHARTS) - 1  # no campaign launched: "Nothing in this period."
    assert "Scheduled jobs" in html


def test_a_user_who_may_only_view_members_sees_the_member_charts_only(client, shop):
    staff = User.objects.create_user("staff", password="x", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_member", content_type__app_label="members"))
    client.force_login(staff)

    html = client.get("/admin/").content.decode()

    assert 'data-chart-card="members-by-tier"' in html
    assert 'data-chart-card="lifetime-value-by-region"' in html
    for hidden in ("points", "repurchase-rate", "tier-moves", "campaigns"):
        assert f'data-chart-card="{hidden}"' not in html
    assert 'data-kpi="liability"' not in html


def index_queries(client) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get("/admin/").status_code == 200
    return len(queries)


def test_the_index_costs_the_same_queries_however_many_members_orders_and_points(admin_client, member_factory,
                                                                                order_factory):
    def grow(prefix, members):
        for n in range(members):
            member = member_factory(external_id=f"{prefix}-{n}", region=f"R{n}")
            order_factory(order_id=f"{prefix}-o-{n}", customer_id=member.external_id)
            points_earn(member=member, amount=10, idempotency_key=f"{prefix}:{n}")

    grow("small", 1)
    admin_client.get("/admin/")  # warm the caches every request shares (content types, the session's user)
    small = index_queries(admin_client)
    grow("large", 25)
    large = index_queries(admin_client)

    assert small == large
    assert large <= 20  # session, user, 12 for the dashboard (10 charts, liability, policy), jobs, history
