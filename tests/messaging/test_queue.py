"""Queueing messages (campaigns.messaging.services.message_queue / messages_queue_bulk): consent per channel, quiet
hours, idempotency keys, and nothing sent from a rolled-back transaction or a dry run."""
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from django.db import transaction

from campaigns.messaging.errors import TemplateNotFound
from campaigns.messaging.models import Message, MessageTemplate
from campaigns.messaging.services import after_quiet_hours, message_queue, messages_queue_bulk
from members.models import Member
from tests.clock import frozen_clock

pytestmark = pytest.mark.django_db

SHANGHAI = "Asia/Shanghai"


def queue(member, key="k-1", **kwargs):
    return message_queue(member=member, template_code=kwargs.pop("template_code", "welcome"), idempotency_key=key,
                         **kwargs)


# --- Consent ---------------------------------------------------------------------------------------------------------


def test_a_member_with_email_consent_gets_an_email(clock, reachable):
    member = reachable(email="fang@example.cn")

    message = queue(member)

    assert (message.status, message.channel, message.recipient) == ("queued", "email", "fang@example.cn")
    assert message.subject and message.body


def test_no_email_without_email_consent_it_falls_back_to_sms_when_allowed(clock, reachable):
    member = reachable(email_opt_in=False, phone="13800000001")

    message = queue(member)

    assert (message.status, message.channel, message.recipient) == ("queued", "sms", "+8613800000001")
    assert message.subject == ""


def test_no_email_without_email_consent_even_when_email_is_asked_for(clock, reachable):
    member = reachable(email_opt_in=False)

    message = queue(member, channel="email")

    assert (message.status, message.skip_reason, message.channel) == ("skipped", "no_consent", "email")
    assert message.recipient == "" and message.body == ""


def test_without_consent_on_any_channel_a_skipped_row_is_recorded(clock, member_factory):
    member = member_factory()  # consents default to no

    message = queue(member)

    assert Message.objects.get() == message
    assert (message.status, message.skip_reason) == ("skipped", "no_consent")


def test_a_member_without_any_address_is_skipped_for_no_address(clock, reachable):
    member = reachable(email="", phone="")

    assert queue(member).skip_reason == "no_address"


def test_a_service_template_needs_only_an_address_not_consent(clock, member_factory):
    MessageTemplate.objects.filter(code="points_expiring").update(marketing=False)
    member = member_factory(email="fang@example.cn")

    message = queue(member, template_code="points_expiring")

    assert (message.status, message.channel, message.marketing) == ("queued", "email", False)


def test_a_blocked_member_gets_no_marketing(clock, reachable):
    member = reachable()
    Member.objects.filter(pk=member.pk).update(is_blocked=True)
    member.refresh_from_db()

    assert queue(member).skip_reason == "blocked"


def test_an_inactive_template_is_skipped_for_no_template(clock, reachable):
    MessageTemplate.objects.filter(code="welcome").update(active=False)

    assert queue(reachable()).skip_reason == "no_template"


def test_an_unknown_template_code_is_refused(clock, reachable):
    with pytest.raises(TemplateNotFound):
        queue(reachable(), template_code="no-such-template")


def test_the_programme_language_is_used_and_chinese_when_asked(clock, reachable, settings):
    member = reachable(name="王芳")

    english = queue(member, key="en")
    chinese = queue(member, key="zh", language="zh-hans")

    assert english.language == "en" and "Welcome" in english.body
    assert chinese.language == "zh-hans" and "欢迎" in chinese.body


def test_a_language_without_a_template_falls_back_to_english(clock, reachable):
    MessageTemplate.objects.filter(code="welcome", language="zh-hans").delete()

    message = queue(reachable(), language="zh-hans")

    assert message.language == "en"


# --- Quiet hours -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("local_time", "expected_local"),
    [
        ("2026-03-02 22:30", "2026-03-03 09:00"),  # evening: the next morning
        ("2026-03-03 01:00", "2026-03-03 09:00"),  # after midnight: the same morning
        ("2026-03-02 21:00", "2026-03-03 09:00"),  # the first minute of the quiet hours
    ],
)
def test_a_message_queued_in_quiet_hours_is_scheduled_for_their_end(reachable, local_time, expected_local):
    moment = _shanghai(local_time)
    with frozen_clock(moment):
        message = queue(reachable())

    assert message.status == "queued"  # deferred, not skipped
    assert message.scheduled_at == _shanghai(expected_local)


@pytest.mark.parametrize("local_time", ["2026-03-02 09:00", "2026-03-02 20:59"])
def test_a_message_queued_outside_quiet_hours_is_due_at_once(reachable, local_time):
    moment = _shanghai(local_time)
    with frozen_clock(moment):
        message = queue(reachable())

    assert message.scheduled_at == moment


def test_quiet_hours_can_be_turned_off(settings):
    settings.LOYALTY_QUIET_HOURS = ()
    moment = _shanghai("2026-03-02 23:00")

    assert after_quiet_hours(moment) == moment


def test_send_after_is_respected_and_moved_out_of_quiet_hours(clock, reachable):
    message = queue(reachable(), send_after=_shanghai("2026-03-05 23:15"))

    assert message.scheduled_at == _shanghai("2026-03-06 09:00")


def test_a_message_deferred_by_quiet_hours_starts_no_send_task(reachable, django_capture_on_commit_callbacks,
                                                               mailoutbox):
    member = reachable()
    with frozen_clock(_shanghai("2026-03-02 22:30")):
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            queue(member)

    assert callbacks == []
    assert mailoutbox == []


# --- Idempotency, transactions, dry runs ----------------------------------------------------------------------------


def test_the_same_key_twice_queues_one_message(clock, reachable):
    member = reachable()

    first = queue(member, key="welcome:1")
    second = queue(member, key="welcome:1")

    assert first.pk == second.pk
    assert Message.objects.count() == 1


def test_a_committed_message_due_now_is_sent_after_commit(clock, reachable, django_capture_on_commit_callbacks,
                                                          mailoutbox):
    member = reachable(email="fang@example.cn")

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        message = queue(member)

    assert len(callbacks) == 1
    message.refresh_from_db()
    assert message.status == "sent"
    assert [mail.to for mail in mailoutbox] == [["fang@example.cn"]]


def test_a_rolled_back_transaction_queues_no_task_and_leaves_no_row(clock, reachable,
                                                                     django_capture_on_commit_callbacks, mailoutbox):
    member = reachable()

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with pytest.raises(RuntimeError), transaction.atomic():
            queue(member)
            raise RuntimeError("the caller's write failed")

    assert callbacks == []
    assert not Message.objects.exists()
    assert mailoutbox == []


def test_a_dry_run_writes_and_sends_nothing(clock, reachable, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        message = queue(reachable(name="Li Na"), dry_run=True)

    assert message.pk is None and "Li Na" in message.body
    assert callbacks == []
    assert not Message.objects.exists()


# --- Bulk (a campaign's audience) -----------------------------------------------------------------------------------


def test_bulk_queue_writes_one_row_per_member_recording_who_was_skipped(clock, reachable, member_factory):
    reachable(), reachable(email_opt_in=False), member_factory()

    result = messages_queue_bulk(
        members=Member.objects.all(), template_code="win_back", idempotency_key="campaign:7", source="campaign:7",
        batch_size=2,
    )

    assert (result.queued, dict(result.skipped), result.existing) == (2, {"no_consent": 1}, 0)
    assert Message.objects.filter(source="campaign:7").count() == 3
    rows = Message.objects.filter(source="campaign:7")
    assert sorted(rows.values_list("status", "skip_reason")) == [("queued", ""), ("queued", ""), ("skipped", "no_consent")]


def test_bulk_queue_run_twice_adds_nothing(clock, reachable):
    reachable(), reachable()
    options = {"members": Member.objects.all(), "template_code": "win_back", "idempotency_key": "campaign:7"}
    messages_queue_bulk(**options)

    again = messages_queue_bulk(**options)

    assert (again.queued, again.existing) == (0, 2)
    assert Message.objects.count() == 2


def test_bulk_queue_renders_each_members_own_context(clock, reachable):
    li, wang = reachable(name="Li Na"), reachable(name="Wang Fang")

    messages_queue_bulk(
        members=Member.objects.all(), template_code="coupon_granted", idempotency_key="campaign:8",
        context={"coupon_value": "¥20"},
        context_for=lambda ids: {member_id: {"coupon_code": f"C-{member_id}"} for member_id in ids},
    )

    bodies = {m.member_id: m.body for m in Message.objects.all()}
    assert "Li Na" in bodies[li.pk] and f"C-{li.pk}" in bodies[li.pk] and "¥20" in bodies[li.pk]
    assert "Wang Fang" in bodies[wang.pk] and f"C-{wang.pk}" in bodies[wang.pk]


def test_bulk_dry_run_counts_and_writes_nothing(clock, reachable, django_capture_on_commit_callbacks):
    reachable(), reachable()

    with django_capture_on_commit_callbacks() as callbacks:
        result = messages_queue_bulk(
            members=Member.objects.all(), template_code="win_back", idempotency_key="campaign:9", dry_run=True
        )

    assert result.queued == 2
    assert callbacks == []
    assert not Message.objects.exists()


def test_bulk_queue_sends_once_committed(clock, reachable, django_capture_on_commit_callbacks, mailoutbox):
    reachable(), reachable()

    with django_capture_on_commit_callbacks(execute=True):
        messages_queue_bulk(members=Member.objects.all(), template_code="win_back", idempotency_key="campaign:10")

    assert len(mailoutbox) == 2
    assert set(Message.objects.values_list("status", flat=True)) == {"sent"}


def _shanghai(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(SHANGHAI)).astimezone(UTC)


def test_nothing_is_queued_while_an_import_brings_over_the_past(clock, reachable, django_capture_on_commit_callbacks):
    from members.services import history_importing

    member = reachable()
    with django_capture_on_commit_callbacks() as callbacks, history_importing():
        message = queue(member)
        result = messages_queue_bulk(members=Member.objects.all(), template_code="welcome", idempotency_key="c")

    assert message.pk is None and result.queued == 1  # decided and counted as a dry run, never written
    assert callbacks == []
    assert not Message.objects.exists()
