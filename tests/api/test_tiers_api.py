"""GET /api/v1/tiers/: the ladder the storefront shows."""
import pytest

pytestmark = pytest.mark.django_db


def test_tiers_list_the_default_ladder_lowest_first_with_thresholds_and_benefits(api_client):
    response = api_client.get("/api/v1/tiers/")

    assert response.status_code == 200
    ladder = response.json()
    assert [tier["code"] for tier in ladder] == ["member", "silver", "gold", "diamond"]
    assert set(ladder[1]["thresholds"]) == {"growth", "spend", "orders"}
    assert set(ladder[1]["benefits"]) == {
        "points_multiplier", "discount_percent", "free_shipping", "birthday_bonus_points", "perks"
    }
    assert (ladder[0]["validity_months"], ladder[1]["validity_months"]) == (None, 12)


def test_tiers_list_names_each_tiers_perks(api_client):
    gold = next(tier for tier in api_client.get("/api/v1/tiers/").json() if tier["code"] == "gold")

    assert [perk["code"] for perk in gold["benefits"]["perks"]] == ["fast-refund", "priority-support"]
    assert gold["benefits"]["perks"][0]["name"] == "Fast refunds"


def test_tiers_list_needs_a_key(client):
    assert client.get("/api/v1/tiers/").status_code == 401


def test_tiers_list_query_count_is_constant(api_client, django_assert_max_num_queries):
    api_client.get("/api/v1/tiers/")  # warm-up: the first use of a key records last_used_at
    with django_assert_max_num_queries(4):  # key, ladder, perks
        api_client.get("/api/v1/tiers/")
