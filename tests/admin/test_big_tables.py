"""The big changelists (members, orders, the ledger) count with members.paginators.EstimatedCountPaginator: the
planner's estimate on PostgreSQL when it is large, an exact count otherwise (and always on SQLite).

The PostgreSQL tests make a table look huge to the planner by writing its statistics (`pg_class.reltuples`,
`relpages`) inside the test's transaction, which rolls back with it."""
import re
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from members.admin import MemberAdmin, OrderAdmin
from members.models import Member, Order
from members.paginators import EstimatedCountPaginator, estimated_row_count
from points.admin import PointsTransactionAdmin
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
    assert model_admin.paginator is EstimatedCountPaginator


def test_member_changelist_counts_exactly_on_small_tables(admin_client, member_factory):
    for _ in range(3):
        member_factory()

    response = admin_client.get(changelist_url(Member))

    assert response.status_code == 200
    assert response.context["cl"].result_count == Member.objects.count() == 3
    assert response.context["cl"].paginator.is_estimate is False


def test_member_changelist_pages_link_and_render_with_exact_counts(admin_client, member_factory):
    for _ in range(5):
        member_factory()

    first = admin_client.get(changelist_url(Member), {"p": 1})
    MemberAdmin.list_per_page, saved = 2, MemberAdmin.list_per_page
    try:
        paged = admin_client.get(changelist_url(Member), {"p": 3})
    finally:
        MemberAdmin.list_per_page = saved

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
