"""The dashboard's figures are kept in the cache (campaigns.dashboard): a second view of the index reads no
aggregate, "Refresh" recomputes, snapshots serve every period, and the warm job fills the default period."""
from datetime import date

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext

from campaigns.dashboard import CHARTS, DEFAULT_PRESET, Period, chart_rows, dashboard_warm
from campaigns.tasks import dashboard_warm as dashboard_warm_task
from members.models import Member

pytestmark = pytest.mark.django_db

Q1 = Period(start=date(2026, 1, 1), end=date(2026, 3, 31))


@pytest.fixture(autouse=True)
def dashboard_cached(settings):
    settings.LOYALTY_DASHBOARD_CACHE_SECONDS = 600
    cache.clear()
    yield
    cache.clear()


def aggregate_queries(client, path="/admin/") -> list[str]:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(path).status_code == 200
    return [q["sql"] for q in queries.captured_queries if "members_order" in q["sql"] or "GROUP BY" in q["sql"]]


def test_a_second_view_of_the_index_reads_the_figures_from_the_cache(admin_client, member_factory, order_factory):
    member = member_factory()
    order_factory(customer_id=member.external_id)

    first = aggregate_queries(admin_client)
    second = aggregate_queries(admin_client)

    assert first
    assert second == []


def test_the_index_says_when_its_figures_were_computed_and_offers_a_refresh(admin_client):
    html = admin_client.get("/admin/").content.decode()

    assert 'id="dashboard-computed"' in html
    assert "refresh=1" in html


def test_refresh_recomputes_the_figures(admin_client, member_factory):
    admin_client.get("/admin/")

    assert aggregate_queries(admin_client, "/admin/?refresh=1")


def test_cached_rows_are_the_rows_of_their_period(member_factory):
    member_factory()
    chart = CHARTS["new-members"]
    other = Period(start=date(2025, 1, 1), end=date(2025, 3, 31))

    rows_q1, _at = chart_rows(chart, Q1)
    rows_other, _at = chart_rows(chart, other)

    assert [row["month"] for row in rows_q1] == [date(2026, 1, 1), date(2026, 2, 1), date(2026, 3, 1)]
    assert [row["month"] for row in rows_other] == [date(2025, 1, 1), date(2025, 2, 1), date(2025, 3, 1)]


def test_a_snapshot_is_computed_once_for_every_period(member_factory):
    member_factory()
    chart = CHARTS["members-by-tier"]
    chart_rows(chart, Q1)

    with CaptureQueriesContext(connection) as queries:
        chart_rows(chart, Period(start=date(2025, 1, 1), end=date(2025, 3, 31)))

    assert len(queries) == 0


def test_figures_change_only_when_refreshed_or_expired(member_factory):
    chart = CHARTS["members-by-tier"]
    before, _at = chart_rows(chart, Q1)
    member_factory()

    kept, _at = chart_rows(chart, Q1)
    refreshed, _at = chart_rows(chart, Q1, refresh=True)

    assert sum(row["members"] for row in kept) == sum(row["members"] for row in before)
    assert sum(row["members"] for row in refreshed) == Member.objects.count()


def test_the_cache_can_be_turned_off(settings, member_factory):
    settings.LOYALTY_DASHBOARD_CACHE_SECONDS = 0
    chart = CHARTS["members-by-tier"]
    chart_rows(chart, Q1)
    member_factory()

    rows, _at = chart_rows(chart, Q1)

    assert sum(row["members"] for row in rows) == Member.objects.count()


def test_the_warm_job_computes_the_default_period_so_the_index_reads_no_aggregate(admin_client, member_factory):
    member_factory()

    assert dashboard_warm_task.delay().get() == list(CHARTS)

    assert aggregate_queries(admin_client) == []


def test_warming_covers_every_chart_of_the_default_period():
    period = Period.preset_of(DEFAULT_PRESET)

    dashboard_warm(period)

    with CaptureQueriesContext(connection) as queries:
        for chart in CHARTS.values():
            chart_rows(chart, period)
    assert len(queries) == 0
