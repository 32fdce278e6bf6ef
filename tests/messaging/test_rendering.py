"""Rendering templates (campaigns.messaging.rendering): the member's values in English and Chinese, syntax errors
refused, and the sandbox (variables, a few filters and {% if %} only; plain text)."""
from datetime import timedelta
from decimal import Decimal

import pytest

from campaigns.messaging.errors import InvalidTemplate
from campaigns.messaging.models import MessageTemplate
from campaigns.messaging.rendering import template_compile, template_render
from campaigns.messaging.selectors import sample_context
from campaigns.messaging.services import message_queue, template_render_message
from points.services import points_earn

from .conftest import NOW

pytestmark = pytest.mark.django_db


@pytest.fixture
def gold_member(clock, reachable, order_factory):
    """Li Na / 王芳 on Silver (¥1,200 of orders) with 300 points expiring on 20 March 2026 (local)."""

    def make(name):
        member = reachable(name=name)
        order_factory(customer_id=member.external_id, amount=Decimal("1200"))
        # A lot expiring at local midnight of 21 March is usable through 20 March.
        points_earn(member=member, amount=300, idempotency_key=f"expiring-{member.pk}",
                    expires_at=NOW.replace(day=20, hour=16, minute=0))
        member.refresh_from_db()
        return member

    return make


def test_the_member_values_render_in_english(gold_member):
    member = gold_member("Li Na")

    message = message_queue(member=member, template_code="points_expiring", idempotency_key="x", channel="email")

    assert "Li Na" in message.body
    assert "300 of your points expire soon" in message.body
    assert "until 20 March 2026" in message.body
    assert f"{member.points_balance:,} points" in message.body
    assert message.subject == "300 of your points expire soon"


def test_the_member_values_render_in_chinese(gold_member):
    member = gold_member("王芳")

    message = message_queue(
        member=member, template_code="points_expiring", idempotency_key="x", channel="email", language="zh-hans"
    )

    assert message.body.startswith("王芳，您好")
    assert "您有 300 积分即将过期" in message.body
    assert "2026年3月20日" in message.body
    assert f"当前积分余额：{member.points_balance}" in message.body


def test_the_tier_and_next_tier_render(clock, reachable, order_factory):
    member = reachable(name="Li Na")
    order_factory(customer_id=member.external_id, amount=Decimal("1200"))
    member.refresh_from_db()

    message = message_queue(member=member, template_code="tier_up", idempotency_key="x", channel="email",
                            context={"previous_tier": "Member"})

    assert message.subject == "Congratulations: you are now Silver!"
    assert "from Member to Silver" in message.body
    assert "Next up: Gold." in message.body


def test_month_names_follow_the_template_language():
    day = NOW.date() + timedelta(days=10)

    assert template_render('{{ d|date:"F" }}', {"d": day}, language="en") == "March"
    assert template_render('{{ d|date:"F" }}', {"d": day}, language="zh-hans") == "三月"


def test_a_syntax_error_is_refused():
    with pytest.raises(InvalidTemplate, match="Unclosed tag"):
        template_compile("{% if points_balance %}no end")


@pytest.mark.parametrize(
    "source",
    [
        "{% load static %}{% static 'x' %}",
        "{% include 'admin/base.html' %}",
        "{% now 'Y' %}",
        "{% for x in name %}{{ x }}{% endfor %}",
        "{{ name|safe }}",
        "{{ name|pprint }}",
    ],
)
def test_only_variables_safe_filters_and_if_are_allowed(source):
    with pytest.raises(InvalidTemplate):
        template_compile(source)


def test_text_is_plain_not_html_escaped():
    assert template_render("{{ name }} & co", {"name": "<Li & Na>"}, language="en") == "<Li & Na> & co"


def test_a_missing_variable_renders_empty_and_default_fills_it():
    assert template_render('Hi {{ nobody }}|{{ name|default:"friend" }}', {"name": ""}, language="en") == "Hi |friend"


def test_every_default_template_renders_with_sample_values():
    templates = list(MessageTemplate.objects.all())
    codes = {t.code for t in templates}

    assert codes == {"welcome", "birthday", "referral_reward", "win_back", "tier_up", "points_expiring",
                     "coupon_granted", "bonus_points"}
    assert len(templates) == len(codes) * 2 * 2  # email and SMS, English and Chinese
    for template in templates:
        subject, body = template_render_message(template, sample_context(template.language))
        assert body, template
        assert "{" not in body and "{" not in subject, template
        assert bool(subject) == (template.channel == "email"), template
