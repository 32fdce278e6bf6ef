"""The big changelists (members, orders, the ledger) count with members.console.big_tables.BigTablePaginator: the
planner's estimate on PostgreSQL when it is large, an exact count otherwise (and always on SQLite).

The PostgreSQL tests make a table look huge to the planner by writing its statistics (`pg_class.reltuples`,
`relpages`) inside the test's transaction, which rolls back with it."""
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from members.admin import MemberAdmin, OrderAdmin
from members.console.big_tables import BigTablePaginator, estimated_row_count
from members.models import Member, Order
from points.admin import PointsTransactionAdmin, RedemptionAdmin
from points.models import PointsTransaction

pytestmark = pytest.mark.django_db

HUGE = 5_000_000


def changelist_url(model):
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")


def pretend_huge(model, rows=HUGE):
    """Statistics as if the table held `rows` rows on one page per row's worth of the real table (PostgreSQL)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE pg_class SET reltuples = %s, relpages = 1 WHERE oid = to_regclass(%s)",
            [rows, model._meta.db_table],
        )


def whole_table_counts(queries, table):
    pattern = re.compile(rf'SELECT COUNT\(\*\) AS "__count" FROM "{table}"\s*$', re.IGNORECASE)
    return [query["sql"] for query in queries if pattern.match(query["sql"].strip())]


@pytest.mark.parametrize("model_admin", [MemberAdmin, OrderAdmin, PointsTransactionAdmin])
def test_big_changelists_use_the_estimating_paginator(model_admin):
    assert model_admin.paginator is BigTablePaginator


def test_member_changelist_counts_exactly_on_small_tables(admin_client, member_factory):
    for _ in range(3):
        member_factory()

    response = admin_client.get(changelist_url(Member))

    assert response.status_code == 200
    assert response.context["cl"].result_count == Member.objects.count() == 3
    assert response.context["cl"].paginator.is_estimate is False


def test_member_changelist_pages_link_and_render_with_exact_counts(admin_client, member_factory, monkeypatch):
    for _ in range(5):
        member_factory()

    first = admin_client.get(changelist_url(Member), {"p": 1})
    # monkeypatch, not an assignment and a restore: it leaves MemberAdmin's class dict as it found it (the inherited
    # list_per_page), which tests/admin/test_member_page_sections.py checks.
    monkeypatch.setattr(MemberAdmin, "list_per_page", 2)
    paged = admin_client.get(changelist_url(Member), {"p": 3})

    assert first.status_code == 200
    assert paged.status_code == 200
    assert paged.context["cl"].paginator.num_pages == 3
    assert len(paged.context["cl"].result_list) == 1


def test_estimate_is_not_asked_off_postgresql(member):
    if connection.vendor == "postgresql":
        pytest.skip("SQLite behaviour")
    assert estimated_row_count(Member.objects.all()) is None


@pytest.mark.postgres
def test_unfiltered_member_changelist_takes_the_planner_estimate_not_a_count(admin_client, member_factory):
    for _ in range(3):
        member_factory()
    pretend_huge(Member)

    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(changelist_url(Member))

    assert response.status_code == 200
    assert response.context["cl"].result_count == HUGE
    assert response.context["cl"].paginator.is_estimate is True
    assert whole_table_counts(queries.captured_queries, "members_member") == []


@pytest.mark.postgres
@pytest.mark.parametrize("model", [Order, PointsTransaction], ids=lambda model: model._meta.label)
def test_unfiltered_order_and_ledger_changelists_take_the_estimate(admin_client, member_factory, order_factory, model):
    member = member_factory()
    order_factory(customer_id=member.external_id, amount=Decimal("500"))
    pretend_huge(model)

    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(changelist_url(model))

    assert response.status_code == 200
    assert response.context["cl"].result_count == HUGE
    assert whole_table_counts(queries.captured_queries, model._meta.db_table) == []


@pytest.mark.postgres
def test_a_filter_on_a_huge_table_counts_exactly(admin_client, member_factory):
    for _ in range(3):
        member_factory()
    pretend_huge(Member)

    response = admin_client.get(changelist_url(Member), {"is_blocked__exact": "0"})

    assert response.status_code == 200
    assert response.context["cl"].result_count == 3
    assert response.context["cl"].paginator.is_estimate is False


@pytest.mark.postgres
def test_an_exact_search_on_a_huge_table_counts_exactly(admin_client, member_factory):
    members = [member_factory() for _ in range(3)]
    pretend_huge(Member)

    response = admin_client.get(changelist_url(Member), {"q": members[0].external_id})

    assert response.status_code == 200
    assert response.context["cl"].result_count == 1
    assert response.context["cl"].paginator.is_estimate is False


# --- Bounded counts, capped pages, ordering, searches, indexes (members.console.big_tables) --------------------------


@pytest.fixture
def small_count_limit(monkeypatch):
    """A count limit of 2 rows and pages of 1 row, so five members behave like a huge filtered list."""
    monkeypatch.setattr(BigTablePaginator, "count_limit", 2)
    monkeypatch.setattr(MemberAdmin, "list_per_page", 1)


def test_a_filtered_list_counts_exactly_up_to_the_limit_and_says_more_than_beyond(
    admin_client, member_factory, small_count_limit
):
    for _ in range(5):
        member_factory()

    response = admin_client.get(changelist_url(Member), {"is_blocked__exact": "0"})

    paginator = response.context["cl"].paginator
    assert response.status_code == 200
    assert paginator.is_lower_bound is True
    assert paginator.count == 3  # the limit + 1: the count stopped there
    assert "more than 2 members" in response.content.decode()
    header = response.content.decode().split('data-testid="header-count"', 1)[1].split("</span>", 1)[0]
    assert "more than 2 results" in header


def test_pages_beyond_the_counted_rows_are_not_offered(admin_client, member_factory, small_count_limit):
    for _ in range(5):
        member_factory()

    response = admin_client.get(changelist_url(Member), {"is_blocked__exact": "0"})

    assert response.context["cl"].paginator.num_pages == 2  # 2 counted rows, 1 a page
    assert "the first 2 by page" in response.content.decode()


def test_a_filtered_count_within_the_limit_is_exact(admin_client, member_factory):
    for _ in range(3):
        member_factory()

    response = admin_client.get(changelist_url(Member), {"is_blocked__exact": "0"})

    assert response.context["cl"].paginator.is_exact is True
    assert response.context["cl"].result_count == 3


def test_the_filtered_count_is_a_count_over_a_limit(admin_client, member_factory):
    member_factory()

    with CaptureQueriesContext(connection) as queries:
        admin_client.get(changelist_url(Member), {"is_blocked__exact": "0"})

    counts = [q["sql"] for q in queries.captured_queries if "COUNT(*)" in q["sql"] and "members_member" in q["sql"]]
    assert counts and all("LIMIT 10001" in sql for sql in counts)


@pytest.mark.postgres
def test_an_estimated_list_says_about_and_offers_only_the_first_pages(admin_client, member_factory):
    member_factory()
    pretend_huge(Member)

    response = admin_client.get(changelist_url(Member))

    paginator = response.context["cl"].paginator
    assert paginator.num_pages == 10_000 // MemberAdmin.list_per_page
    assert "about 5,000,000 members" in response.content.decode()
    header = response.content.decode().split('data-testid="header-count"', 1)[1].split("</span>", 1)[0]
    assert "about 5,000,000 results" in header
    assert "Show all" not in header  # nothing narrows the list


def test_a_page_past_the_browsable_ones_is_refused_not_read(admin_client, member_factory, small_count_limit):
    for _ in range(5):
        member_factory()

    response = admin_client.get(changelist_url(Member), {"is_blocked__exact": "0", "p": "5"})

    assert response.status_code == 302  # Django's "?e=1": an invalid page of a changelist
    assert "e=1" in response["Location"]


def test_an_ascending_sort_breaks_ties_by_ascending_id(admin_client, member_factory):
    members = [member_factory() for _ in range(3)]  # all with 0 orders: one tie
    column = MemberAdmin.list_display.index("order_count") + 1

    response = admin_client.get(changelist_url(Member), {"o": str(column)})

    assert [m.pk for m in response.context["cl"].result_list] == sorted(m.pk for m in members)


def test_a_descending_sort_breaks_ties_by_descending_id(admin_client, member_factory):
    members = [member_factory() for _ in range(3)]
    column = MemberAdmin.list_display.index("order_count") + 1

    response = admin_client.get(changelist_url(Member), {"o": f"-{column}"})

    assert [m.pk for m in response.context["cl"].result_list] == sorted((m.pk for m in members), reverse=True)


@pytest.mark.parametrize(
    "model_admin, unsortable",
    [(MemberAdmin, "tier"), (OrderAdmin, "member_display"), (OrderAdmin, "status_display"),
     (PointsTransactionAdmin, "member_display"), (PointsTransactionAdmin, "amount_display")],
)
def test_columns_without_an_index_are_not_sortable(model_admin, unsortable):
    assert unsortable in model_admin.list_display
    assert unsortable not in model_admin.sortable_by


def _per_member_logs():
    """The admins of the tables that grow with members and orders besides the three big ones."""
    from campaigns.admin import CampaignGrantAdmin
    from campaigns.engagement.admin import (
        CheckInAdmin,
        CouponAdmin,
        EngagementEventAdmin,
        MemberBadgeAdmin,
        ReferralAdmin,
    )
    from campaigns.messaging.admin import MessageAdmin
    from members.admin.webhooks import WebhookDeliveryAdmin
    from members.console.admin import AuditEntryAdmin
    from tiers.admin import GrowthEventAdmin, TierChangeAdmin

    return [TierChangeAdmin, GrowthEventAdmin, MessageAdmin, CouponAdmin, ReferralAdmin, CheckInAdmin,
            EngagementEventAdmin, MemberBadgeAdmin, CampaignGrantAdmin, WebhookDeliveryAdmin, AuditEntryAdmin]


BIG_ADMINS = [MemberAdmin, OrderAdmin, PointsTransactionAdmin, RedemptionAdmin, *_per_member_logs()]


@pytest.mark.parametrize("model_admin", BIG_ADMINS, ids=lambda admin: admin.__name__)
def test_big_lists_draw_no_date_hierarchy_and_no_facets(model_admin):
    from django.contrib.admin import ShowFacets

    assert model_admin.paginator is BigTablePaginator
    assert model_admin.date_hierarchy is None
    assert model_admin.show_facets is ShowFacets.NEVER
    assert model_admin.show_full_result_count is False


@pytest.mark.parametrize("model_admin", BIG_ADMINS, ids=lambda admin: admin.__name__)
def test_big_lists_sort_only_by_indexed_columns(model_admin):
    """Every sortable column of a big list leads a (column, id) index or is unique (members.console.big_tables)."""
    from django.contrib.admin.sites import site

    admin_instance = next(instance for instance in site._registry.values() if type(instance) is model_admin)
    sortable = admin_instance.sortable_by if admin_instance.sortable_by is not None else admin_instance.list_display
    model = admin_instance.model
    indexed = {index.fields[0].lstrip("-") for index in model._meta.indexes if index.fields}
    indexed |= {field.name for field in model._meta.fields if field.unique or field.primary_key}
    indexed |= {field.name for field in model._meta.fields if getattr(field, "db_index", False)}
    for column in sortable:
        attribute = getattr(admin_instance, column, None)
        ordering = getattr(attribute, "admin_order_field", None) or column
        if not isinstance(ordering, str) or column not in admin_instance.list_display:
            continue
        assert ordering.lstrip("-") in indexed, f"{model_admin.__name__} sorts by {ordering} without an index"


def test_orders_are_found_by_their_members_email(admin_client, member_factory, order_factory):
    member = member_factory(email="Jane.Doe@example.com")
    other = member_factory()
    order_factory(customer_id=member.external_id, order_id="ord-jane")
    order_factory(customer_id=other.external_id, order_id="ord-other")

    response = admin_client.get(changelist_url(Order), {"q": "jane.doe@EXAMPLE.com"})

    assert [o.order_id for o in response.context["cl"].result_list] == ["ord-jane"]


def test_orders_are_found_by_order_id_or_customer_id(admin_client, member_factory, order_factory):
    member = member_factory()
    order_factory(customer_id=member.external_id, order_id="ord-1")
    order_factory(customer_id=member.external_id, order_id="ord-2")

    by_id = admin_client.get(changelist_url(Order), {"q": "ord-2"})
    by_member = admin_client.get(changelist_url(Order), {"q": member.external_id})
    nothing = admin_client.get(changelist_url(Order), {"q": "nobody"})

    assert [o.order_id for o in by_id.context["cl"].result_list] == ["ord-2"]
    assert {o.order_id for o in by_member.context["cl"].result_list} == {"ord-1", "ord-2"}
    assert list(nothing.context["cl"].result_list) == []


def test_an_order_search_joins_no_member_table(admin_client, member_factory, order_factory):
    member = member_factory()
    order_factory(customer_id=member.external_id)

    with CaptureQueriesContext(connection) as queries:
        admin_client.get(changelist_url(Order), {"q": member.external_id})

    counts = [q["sql"] for q in queries.captured_queries if "COUNT(*)" in q["sql"] and "members_order" in q["sql"]]
    assert counts and all("JOIN" not in sql for sql in counts)


def test_ledger_entries_are_found_by_their_members_phone(admin_client, member_factory, order_factory):
    member = member_factory(phone="13900000001")
    order_factory(customer_id=member.external_id, amount=Decimal("200"), order_id="ord-phone")

    response = admin_client.get(changelist_url(PointsTransaction), {"q": "13900000001"})

    assert response.status_code == 200
    assert {t.member_id for t in response.context["cl"].result_list} == {member.pk}


def test_the_region_dropdown_lists_each_region_once(admin_client, member_factory):
    from django.core.cache import cache

    cache.clear()
    for region in ("North", "South", "North", ""):
        member_factory(region=region)

    response = admin_client.get(changelist_url(Member))

    region_filter = next(f for f in response.context["cl"].filter_specs if getattr(f, "field_name", "") == "region")
    assert [value for value, _label in region_filter.lookup_choices] == ["North", "South"]


def test_a_region_is_filtered_exactly(admin_client, member_factory):
    north = member_factory(region="North")
    member_factory(region="Northwest")

    response = admin_client.get(changelist_url(Member), {"region": "North"})

    assert [m.pk for m in response.context["cl"].result_list] == [north.pk]


def _plan(queryset) -> str:
    """EXPLAIN of `queryset`'s filter (no ordering: an index read in the list's order may be chosen instead) with
    sequential scans priced out, so the plan shows whether an index can serve the filter."""
    sql, params = queryset.order_by().query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN {sql}", params)
        return "\n".join(row[0] for row in cursor.fetchall())


@pytest.mark.postgres
@pytest.mark.parametrize(
    "lookup, index",
    [
        ({"name__icontains": "ann"}, "member_name_trgm_idx"),
        ({"email__iexact": "Jane@Example.com"}, "member_email_upper_idx"),
        ({"is_blocked": True}, "member_blocked_idx"),
        ({"tier_overridden": True}, "member_overridden_idx"),
        ({"name__istartswith": "王"}, "member_name_prefix_idx"),
    ],
    ids=["name part", "email", "blocked", "tier overridden", "name beginning"],
)
def test_member_searches_and_rare_filters_have_an_index(member, lookup, index):
    assert index in _plan(Member.objects.filter(**lookup))


@pytest.mark.postgres
@pytest.mark.parametrize(
    "model, lookup, index",
    [
        (Order, {"status": "cancelled"}, "order_status_placed_idx"),
        (Order, {"channel": "app"}, "order_channel_placed_idx"),
        (Order, {"currency": "EUR"}, "order_currency_placed_idx"),
        (Order, {"amount__gte": 500}, "order_amount_idx"),
        (PointsTransaction, {"reference": "ord-1"}, "points_tx_reference_idx"),
        (PointsTransaction, {"expires_at__lt": "2030-01-01T00:00:00Z"}, "points_tx_expires_idx"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_order_and_ledger_filters_have_an_index(member, model, lookup, index):
    assert index in _plan(model.objects.filter(**lookup))


@pytest.mark.postgres
def test_the_distinct_values_of_a_column_are_read_by_a_skip_scan(member_factory, order_factory):
    from members.console.big_tables import distinct_column_values

    member = member_factory()
    for n, channel in enumerate(["web", "app", "web", "store", ""]):
        order_factory(customer_id=member.external_id, channel=channel, order_id=f"ord-ch-{n}")

    assert distinct_column_values(Order.objects.all(), "channel", 100) == ["app", "store", "web"]
    assert distinct_column_values(Order.objects.all(), "channel", 2) == ["app", "store"]


def test_a_short_word_matches_the_beginning_of_a_name(admin_client, member_factory):
    wang = member_factory(name="王伟")
    member_factory(name="李王")
    member_factory(name="Ann Lee")

    response = admin_client.get(changelist_url(Member), {"q": "王"})

    assert [m.pk for m in response.context["cl"].result_list] == [wang.pk]


def test_a_word_of_three_characters_or_more_matches_any_part_of_a_name(admin_client, member_factory):
    joanna = member_factory(name="Joanna Smith")
    member_factory(name="Anne Jones")

    response = admin_client.get(changelist_url(Member), {"q": "anna"})

    assert [m.pk for m in response.context["cl"].result_list] == [joanna.pk]


def test_every_word_of_a_member_search_must_match(admin_client, member_factory):
    both = member_factory(name="Ann Lee")
    member_factory(name="Ann Smith")

    response = admin_client.get(changelist_url(Member), {"q": "ann lee"})

    assert [m.pk for m in response.context["cl"].result_list] == [both.pk]


def test_a_member_is_still_found_by_exact_ids_and_email(admin_client, member_factory):
    member = member_factory(email="Kim@Example.com", phone="13911112222")
    member_factory()

    for term in (member.external_id, "13911112222", "kim@example.COM"):
        response = admin_client.get(changelist_url(Member), {"q": term})
        assert [m.pk for m in response.context["cl"].result_list] == [member.pk], term


def test_an_expiry_window_lists_the_soonest_expiring_first(admin_client, member_factory):
    from points.services import points_earn

    member = member_factory()
    now = timezone.now()
    late, _ = points_earn(member=member, amount=5, idempotency_key="late", expires_at=now + timedelta(days=20))
    soon, _ = points_earn(member=member, amount=5, idempotency_key="soon", expires_at=now + timedelta(days=3))
    window = {"expires_at_from": (now + timedelta(days=1)).date().isoformat(),
              "expires_at_to": (now + timedelta(days=30)).date().isoformat()}

    response = admin_client.get(changelist_url(PointsTransaction), window)

    assert [t.pk for t in response.context["cl"].result_list] == [soon.pk, late.pk]


def test_an_operators_sort_wins_over_the_range_order(admin_client, member_factory):
    from points.services import points_earn

    member = member_factory()
    now = timezone.now()
    first, _ = points_earn(member=member, amount=5, idempotency_key="first", expires_at=now + timedelta(days=20))
    second, _ = points_earn(member=member, amount=5, idempotency_key="second", expires_at=now + timedelta(days=3))
    column = PointsTransactionAdmin.list_display.index("created_at") + 1
    window = {"expires_at_from": (now + timedelta(days=1)).date().isoformat(), "o": f"-{column}"}

    response = admin_client.get(changelist_url(PointsTransaction), window)

    assert [t.pk for t in response.context["cl"].result_list] == [second.pk, first.pk]


def test_a_members_rows_are_read_without_an_or_when_only_members_match(admin_client, member_factory, order_factory):
    member = member_factory()
    order_factory(customer_id=member.external_id)

    with CaptureQueriesContext(connection) as queries:
        admin_client.get(changelist_url(Order), {"q": member.external_id})

    listed = [q["sql"] for q in queries.captured_queries
              if 'FROM "members_order"' in q["sql"] and "member_id" in q["sql"] and "EXISTS" not in q["sql"]]
    assert listed and all(" OR " not in sql for sql in listed)


def test_a_list_page_builds_its_column_headers_once(admin_client, member_factory, monkeypatch):
    from unfold.templatetags import unfold_list

    for _ in range(3):
        member_factory()
    original, calls = unfold_list.result_headers.original, []
    monkeypatch.setattr(unfold_list.result_headers, "original", lambda cl: calls.append(cl) or original(cl))

    response = admin_client.get(changelist_url(Member))

    assert response.status_code == 200
    assert len(calls) == 1  # Unfold alone: once for the table head and once per row
    assert response.content.decode().count('class="field-member') == 3


def test_a_per_member_log_is_searched_by_the_members_email(admin_client, member_factory, order_factory):
    from tiers.models import GrowthEvent

    member = member_factory(email="Log.Reader@example.com")
    other = member_factory()
    order_factory(customer_id=member.external_id, order_id="ord-log-1")
    order_factory(customer_id=other.external_id, order_id="ord-log-2")

    response = admin_client.get(changelist_url(GrowthEvent), {"q": "log.reader@example.com"})

    assert response.status_code == 200
    assert {event.member_id for event in response.context["cl"].result_list} == {member.pk}


def test_a_log_searched_only_by_member_finds_nothing_for_an_unknown_member(admin_client, member_factory):
    from campaigns.engagement.models import CheckIn

    member_factory()

    response = admin_client.get(changelist_url(CheckIn), {"q": "nobody@example.com"})

    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == []


def test_a_coupon_is_found_by_its_code_in_any_case(admin_client, member_factory):
    from campaigns.engagement.models import Coupon

    member = member_factory()
    coupon = Coupon.objects.create(member=member, code="SAVE10ABCD", kind=Coupon.Kind.AMOUNT, value=Decimal("10"),
                                   valid_until=timezone.now() + timedelta(days=30))

    response = admin_client.get(changelist_url(Coupon), {"q": "save10abcd"})

    assert [c.pk for c in response.context["cl"].result_list] == [coupon.pk]


def test_the_range_order_is_the_one_the_list_says_it_has(admin_client, member_factory):
    member_factory()
    now = timezone.now()

    response = admin_client.get(
        changelist_url(PointsTransaction), {"expires_at_from": (now + timedelta(days=1)).date().isoformat()}
    )

    expiry = PointsTransactionAdmin.list_display.index("expires_at")
    assert response.context["cl"].get_ordering_field_columns() == {expiry: "asc"}  # not created_at's
