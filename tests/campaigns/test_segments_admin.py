"""The segment admin (campaigns.admin): filters edited as a form, the live count endpoint, saving with the count,
the streamed CSV export and its permission; and the member admin's RFM fields, tags and filters."""
import csv
import io
from datetime import date

import pytest
from django.contrib.auth.models import Permission, User
from django.http import StreamingHttpResponse
from django.urls import reverse

from campaigns.models import Segment
from members.models import ActivityStatus, Member, RfmSegment, Tag
from members.rfm import rfm_refresh

pytestmark = pytest.mark.django_db

COUNT_URL = "/admin/campaigns/segment/count/"


def staff(*codenames):
    user = User.objects.create_user(username="_".join(codenames) or "staff", password="x", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return user


@pytest.fixture
def shoppers(clock, buyer):
    vip = Tag.objects.create(name="VIP")
    a = buyer(days=3, orders=8, spend="4000", region="Shanghai", email_opt_in=True, name="=HYPERLINK(\"http://x\")",
              external_id="c-a", birthday=date(1990, 5, 1))
    b = buyer(days=50, orders=2, spend="200", region="Shanghai", name="@SUM(A1)", external_id="c-b")
    buyer(days=None, region="Beijing", external_id="c-c")
    a.tags.add(vip)
    rfm_refresh()
    return {"vip": vip, "a": a, "b": b}


# --- Live count -------------------------------------------------------------------------------------------------------


def test_the_live_count_answers_json_for_the_posted_filters(admin_client, shoppers):
    response = admin_client.post(COUNT_URL, {"regions": ["Shanghai"], "name": "draft", "email_opt_in": ""})

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"count": 2, "display": "2"}


def test_the_live_count_also_answers_a_get(admin_client, shoppers):
    response = admin_client.get(COUNT_URL, {"activity_statuses": "dormant", "tags": shoppers["vip"].pk})

    assert response.json()["count"] == 0
    assert admin_client.get(COUNT_URL, {"days_since_last_order_min": "30"}).json()["count"] == 1


def test_the_live_count_answers_400_with_the_field_errors(admin_client, shoppers):
    response = admin_client.post(COUNT_URL, {"order_count_min": "5", "order_count_max": "1"})

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["order_count_max"]


def test_the_live_count_is_for_staff_only(client, shoppers):
    response = client.post(COUNT_URL, {})

    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_the_live_count_needs_a_segment_permission(client, shoppers):
    client.force_login(staff("view_member"))
    assert client.post(COUNT_URL, {}).status_code == 403

    client.force_login(staff("view_segment"))
    assert client.post(COUNT_URL, {}).json()["count"] == 3


# --- The segment page -------------------------------------------------------------------------------------------------


def test_adding_a_segment_stores_its_filters_as_json_with_its_count(admin_client, admin_user, shoppers):
    response = admin_client.post(
        reverse("admin:campaigns_segment_add"),
        {
            "name": "Shanghai VIPs",
            "description": "For the spring launch",
            "regions": ["Shanghai"],
            "tags": [shoppers["vip"].pk],
            "rfm_segments": [],
            "email_opt_in": "yes",
            "sms_opt_in": "",
            "order_count_min": "2",
        },
        follow=True,
    )

    assert response.status_code == 200
    segment = Segment.objects.get(name="Shanghai VIPs")
    assert segment.filters == {
        "order_count_min": 2, "regions": ["Shanghai"], "tags": [shoppers["vip"].pk], "email_opt_in": True,
    }
    assert (segment.last_count, segment.created_by) == (1, admin_user)
    assert segment.last_counted_at is not None
    assert "Shanghai VIPs: 1 members match." in [str(m) for m in response.context["messages"]]


def test_the_segment_page_shows_the_saved_filters_as_fields_and_loads_the_live_count(admin_client, shoppers):
    segment = Segment.objects.create(
        name="Gold dormant", filters={"tiers": ["gold"], "activity_statuses": ["dormant"], "birthday_months": [5]},
        last_count=7,
    )

    response = admin_client.get(reverse("admin:campaigns_segment_change", args=[segment.pk]))

    assert response.status_code == 200
    form = response.context["adminform"].form
    assert [t.code for t in form.initial["tiers"]] == ["gold"]
    assert form.initial["activity_statuses"] == ["dormant"]
    html = response.content.decode()
    assert 'id="segment-live-count"' in html and f'data-url="{COUNT_URL}"' in html
    assert "campaigns/segment_count.js" in html
    assert 'name="filters"' not in html  # a form, not raw JSON


def test_the_count_script_is_served_as_a_static_file():
    from django.contrib.staticfiles import finders

    path = finders.find("campaigns/segment_count.js")

    assert path is not None
    assert "segment-live-count" in open(path, encoding="utf-8").read()


def test_an_invalid_range_is_refused_on_save(admin_client, shoppers):
    response = admin_client.post(
        reverse("admin:campaigns_segment_add"),
        {
            "name": "Broken", "lifetime_spend_min": "100", "lifetime_spend_max": "5", "email_opt_in": "",
            "sms_opt_in": "",
        },
    )

    assert response.status_code == 200
    assert "lifetime_spend_max" in response.context["adminform"].form.errors
    assert not Segment.objects.filter(name="Broken").exists()


def test_recount_updates_the_stored_counts(admin_client, shoppers):
    segment = Segment.objects.create(name="Shanghai", filters={"regions": ["Shanghai"]}, last_count=99)

    admin_client.post(
        reverse("admin:campaigns_segment_changelist"),
        {"action": "recount_segments", "_selected_action": [segment.pk]},
    )

    segment.refresh_from_db()
    assert segment.last_count == 2


def test_the_segment_list_describes_the_filters(admin_client, shoppers):
    Segment.objects.create(name="Champions", filters={"rfm_segments": ["champions"], "email_opt_in": True})

    response = admin_client.get(reverse("admin:campaigns_segment_changelist"))

    assert "RFM segments: champions; Email consent: given" in response.content.decode()


# --- Export -----------------------------------------------------------------------------------------------------------


def _csv_rows(response) -> list[list[str]]:
    body = b"".join(response.streaming_content).decode("utf-8")
    assert body.startswith("\ufeff")
    return list(csv.reader(io.StringIO(body.lstrip("\ufeff"))))


def test_export_streams_the_members_as_csv_with_formulas_escaped(admin_client, shoppers):
    segment = Segment.objects.create(name="Shanghai", filters={"regions": ["Shanghai"]})

    response = admin_client.get(reverse("admin:campaigns_segment_export_members", args=[segment.pk]))

    assert response.status_code == 200
    assert isinstance(response, StreamingHttpResponse)
    assert response["Content-Disposition"].startswith('attachment; filename="segment-shanghai-')
    header, *rows = _csv_rows(response)
    assert header[:3] == ["external_id", "name", "email"]
    by_id = {row[0]: dict(zip(header, row, strict=True)) for row in rows}
    assert set(by_id) == {"c-a", "c-b"}
    assert by_id["c-a"]["name"] == "'=HYPERLINK(\"http://x\")"
    assert by_id["c-b"]["name"] == "'@SUM(A1)"
    assert by_id["c-a"]["rfm_segment"] == shoppers["a"].__class__.objects.get(pk=shoppers["a"].pk).rfm_segment
    assert by_id["c-a"]["email_opt_in"] == "yes"
    assert by_id["c-a"]["lifetime_spend"] == "4000.00"


def test_export_reads_the_members_in_chunks(admin_client, shoppers, monkeypatch):
    from campaigns import admin as campaigns_admin

    monkeypatch.setattr(campaigns_admin, "EXPORT_CHUNK", 1)
    segment = Segment.objects.create(name="All", filters={})

    response = admin_client.get(reverse("admin:campaigns_segment_export_members", args=[segment.pk]))

    assert len(_csv_rows(response)) == 1 + 3


def test_export_needs_the_export_permission(client, shoppers):
    segment = Segment.objects.create(name="Shanghai", filters={"regions": ["Shanghai"]})
    url = reverse("admin:campaigns_segment_export_members", args=[segment.pk])

    client.force_login(staff("view_segment", "change_segment"))
    assert client.get(url).status_code == 403

    client.force_login(staff("view_segment", "export_segment"))
    assert client.get(url).status_code == 200


def test_the_list_action_exports_one_selected_segment(admin_client, shoppers):
    segment = Segment.objects.create(name="Shanghai", filters={"regions": ["Shanghai"]})
    other = Segment.objects.create(name="All", filters={})
    changelist = reverse("admin:campaigns_segment_changelist")

    response = admin_client.post(changelist, {"action": "export_members_csv", "_selected_action": [segment.pk]})
    assert len(_csv_rows(response)) == 1 + 2

    response = admin_client.post(
        changelist, {"action": "export_members_csv", "_selected_action": [segment.pk, other.pk]}, follow=True
    )
    assert "Select one segment to export its members." in [str(m) for m in response.context["messages"]]


def test_the_export_action_and_button_are_hidden_without_the_permission(client, admin_client, shoppers):
    segment = Segment.objects.create(name="Shanghai", filters={"regions": ["Shanghai"]})
    export_url = reverse("admin:campaigns_segment_export_members", args=[segment.pk])
    client.force_login(staff("view_segment", "change_segment"))

    assert "export_members_csv" not in client.get(reverse("admin:campaigns_segment_changelist")).content.decode()
    assert export_url not in client.get(reverse("admin:campaigns_segment_change", args=[segment.pk])).content.decode()
    assert "export_members_csv" in admin_client.get(reverse("admin:campaigns_segment_changelist")).content.decode()
    assert export_url in admin_client.get(reverse("admin:campaigns_segment_change", args=[segment.pk])).content.decode()


# --- The member admin -------------------------------------------------------------------------------------------------


def test_the_member_page_shows_the_rfm_scores_segment_activity_and_tags(admin_client, shoppers):
    member = Member.objects.get(external_id="c-a")

    response = admin_client.get(reverse("admin:members_member_change", args=[member.pk]))

    html = response.content.decode()
    assert f"recency {member.rfm_recency} · frequency {member.rfm_frequency} · monetary {member.rfm_monetary}" in html
    assert str(member.get_rfm_segment_display()) in html
    assert "VIP" in html
    assert "tags" in response.context["adminform"].form.fields
    assert "activity_status" not in response.context["adminform"].form.fields  # read-only: members.rfm writes it


def test_staff_tag_a_member_on_the_member_page(admin_client, shoppers):
    member = Member.objects.get(external_id="c-b")
    wholesale = Tag.objects.create(name="wholesale")
    page = admin_client.get(reverse("admin:members_member_change", args=[member.pk]))
    form = page.context["adminform"].form
    data = {name: value for name, value in form.initial.items() if name in form.fields and value not in (None, False)}
    data.pop("tags", None)
    for inline in page.context["inline_admin_formsets"]:
        data.update({f"{inline.formset.prefix}-TOTAL_FORMS": 0, f"{inline.formset.prefix}-INITIAL_FORMS": 0})
    data["tags"] = [wholesale.pk, shoppers["vip"].pk]

    response = admin_client.post(reverse("admin:members_member_change", args=[member.pk]), data)

    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    assert set(member.tags.values_list("name", flat=True)) == {"VIP", "wholesale"}


def test_the_member_list_filters_by_activity_rfm_segment_and_tag(admin_client, shoppers):
    changelist = reverse("admin:members_member_changelist")
    segment_of_a = Member.objects.get(external_id="c-a").rfm_segment

    by_status = admin_client.get(changelist, {"activity_status": ActivityStatus.NO_PURCHASE})
    by_segment = admin_client.get(changelist, {"rfm_segment": segment_of_a})
    by_tag = admin_client.get(changelist, {"tags": shoppers["vip"].pk})

    assert [m.external_id for m in by_status.context["cl"].result_list] == ["c-c"]
    assert "c-a" in [m.external_id for m in by_segment.context["cl"].result_list]
    assert [m.external_id for m in by_tag.context["cl"].result_list] == ["c-a"]
    assert segment_of_a in RfmSegment.values


def test_tags_are_found_by_the_autocomplete(admin_client, shoppers):
    response = admin_client.get(
        "/admin/autocomplete/",
        {"term": "VI", "app_label": "members", "model_name": "member", "field_name": "tags"},
    )

    assert [item["text"] for item in response.json()["results"]] == ["VIP"]


def test_the_sidebar_lists_segments_under_campaigns(admin_client):
    response = admin_client.get("/admin/")

    assert reverse("admin:campaigns_segment_changelist") in response.content.decode()
