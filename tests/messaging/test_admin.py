"""The messages admin: templates are checked on save and previewed; the outbox is read-only, searchable by customer id,
and failed messages are retried by staff with the permission."""
import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse

from campaigns.messaging.channels import TransientSendError
from campaigns.messaging.models import Message, MessageTemplate
from campaigns.messaging.services import message_queue, message_send

pytestmark = pytest.mark.django_db


@pytest.fixture
def welcome_email():
    return MessageTemplate.objects.get(code="welcome", channel="email", language="en")


def template_form_data(template, **changes):
    data = {
        "code": template.code,
        "channel": template.channel,
        "language": template.language,
        "description": template.description,
        "marketing": "on" if template.marketing else "",
        "active": "on" if template.active else "",
        "subject": template.subject,
        "body": template.body,
    }
    data.update(changes)
    return {key: value for key, value in data.items() if value != ""}


def test_a_template_with_a_syntax_error_is_refused_with_a_form_error(admin_client, welcome_email):
    url = reverse("admin:messaging_messagetemplate_change", args=[welcome_email.pk])

    response = admin_client.post(url, template_form_data(welcome_email, body="Hi {% if name %}{{ name }}"))

    assert response.status_code == 200  # the form again, not a redirect
    errors = response.context["adminform"].form.errors
    assert "body" in errors and "does not render" in errors["body"][0]
    welcome_email.refresh_from_db()
    assert "{% if name %}{{ name }}" not in welcome_email.body


def test_a_template_using_a_forbidden_tag_is_refused(admin_client, welcome_email):
    url = reverse("admin:messaging_messagetemplate_change", args=[welcome_email.pk])

    response = admin_client.post(url, template_form_data(welcome_email, subject="{% load static %}Hi"))

    assert "subject" in response.context["adminform"].form.errors


def test_an_email_template_needs_a_subject(admin_client, welcome_email):
    url = reverse("admin:messaging_messagetemplate_change", args=[welcome_email.pk])

    response = admin_client.post(url, template_form_data(welcome_email, subject=""))

    assert "subject" in response.context["adminform"].form.errors


def test_a_valid_template_is_saved_with_who_changed_it(admin_client, admin_user, welcome_email):
    url = reverse("admin:messaging_messagetemplate_change", args=[welcome_email.pk])

    response = admin_client.post(url, template_form_data(welcome_email, body="Hello {{ name|upper }}!"))

    assert response.status_code == 302
    welcome_email.refresh_from_db()
    assert (welcome_email.body, welcome_email.updated_by) == ("Hello {{ name|upper }}!", admin_user)


def test_the_change_page_previews_the_template_with_sample_values(admin_client, welcome_email):
    response = admin_client.get(reverse("admin:messaging_messagetemplate_change", args=[welcome_email.pk]))

    assert response.status_code == 200
    assert "Welcome to the club, Li Na!" in response.content.decode()


def test_the_member_preview_renders_a_real_members_values(admin_client, member_factory, welcome_email):
    member_factory(external_id="c-77", name="Zhang Wei")
    url = reverse("admin:messaging_messagetemplate_preview", args=[welcome_email.pk])

    response = admin_client.get(url, {"member": "c-77"})
    unknown = admin_client.get(url, {"member": "nobody"})

    assert response.status_code == 200
    assert response.context["subject"] == "Welcome to the club, Zhang Wei!"
    assert "Zhang Wei" in response.context["body"]
    assert unknown.context["error"]


def test_the_outbox_is_read_only_and_searchable_by_customer_id(admin_client, member_factory):
    li, wang = member_factory(external_id="c-1"), member_factory(external_id="c-2")
    for member in (li, wang):
        message_queue(member=member, template_code="welcome", idempotency_key=f"w-{member.pk}")
    url = reverse("admin:messaging_message_changelist")

    response = admin_client.get(url, {"q": "c-2"})

    assert [m.member_id for m in response.context["cl"].result_list] == [wang.pk]
    assert admin_client.get(reverse("admin:messaging_message_add")).status_code == 403


@pytest.fixture
def failed_message(member_factory, settings):
    settings.LOYALTY_QUIET_HOURS = ()
    settings.LOYALTY_MESSAGE_MAX_ATTEMPTS = 1
    settings.LOYALTY_MESSAGE_CHANNELS = {"email": "tests.messaging.conftest.ScriptedChannel",
                                         "sms": "tests.messaging.conftest.ScriptedChannel"}
    from tests.messaging.conftest import ScriptedChannel

    ScriptedChannel.sent, ScriptedChannel.outcomes = [], [TransientSendError("down")]
    message = message_queue(member=member_factory(email_opt_in=True), template_code="welcome", idempotency_key="f")
    message_send(message_id=message.pk)
    message.refresh_from_db()
    assert message.status == "failed"
    return message


def retry(client, message):
    return client.post(
        reverse("admin:messaging_message_changelist"),
        {"action": "retry_failed", "_selected_action": [message.pk], "confirmed": "yes"},
    )


def test_retry_failed_queues_the_message_again(admin_client, failed_message, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = retry(admin_client, failed_message)

    assert response.status_code == 302
    failed_message.refresh_from_db()
    assert (failed_message.status, failed_message.attempts) == ("sent", 1)


def test_retry_needs_its_permission(client, failed_message):
    staff = User.objects.create_user("marketing", password="pw", is_staff=True)
    staff.user_permissions.add(*Permission.objects.filter(codename__in=["view_message"]))
    client.force_login(staff)

    response = retry(client, failed_message)

    failed_message.refresh_from_db()
    assert failed_message.status == "failed"
    assert response.status_code in (200, 302)  # Django answers an unknown action with the list again

    staff.user_permissions.add(Permission.objects.get(codename="retry_message"))
    staff = User.objects.get(pk=staff.pk)  # permissions are cached on the instance
    client.force_login(staff)
    retry(client, failed_message)

    failed_message.refresh_from_db()
    assert failed_message.status == "queued"


def test_the_member_page_lists_their_messages(admin_client, member_factory):
    member = member_factory()
    message_queue(member=member, template_code="welcome", idempotency_key="w")

    response = admin_client.get(reverse("admin:members_member_change", args=[member.pk]))

    assert response.status_code == 200
    assert any(getattr(formset.opts, "model", None) is Message for formset in response.context["inline_admin_formsets"])
