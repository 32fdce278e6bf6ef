"""Shared set-up for the message tests: a frozen clock in the middle of a Shanghai morning (outside the quiet hours),
members who consent to both channels, and a channel whose failures a test chooses."""
from datetime import UTC, datetime

import pytest

from campaigns.messaging.channels import MessageChannel
from tests.clock import frozen_clock

NOW = datetime(2026, 3, 2, 2, 30, tzinfo=UTC)  # 10:30 on 2 March 2026 in Shanghai


@pytest.fixture
def clock():
    with frozen_clock(NOW) as fake:
        yield fake


@pytest.fixture
def reachable(member_factory):
    """A member who gave consent on both channels, with an email address and a phone number."""

    def make(**fields):
        return member_factory(**{"email_opt_in": True, "sms_opt_in": True, **fields})

    return make


class ScriptedChannel(MessageChannel):
    """A channel whose outcomes the test scripts: each send pops the next outcome (an exception to raise, or None
    to succeed); sends are recorded."""

    outcomes: list = []
    sent: list = []

    def send(self, message) -> str:
        ScriptedChannel.sent.append(message.pk)
        outcome = ScriptedChannel.outcomes.pop(0) if ScriptedChannel.outcomes else None
        if outcome is not None:
            raise outcome
        return f"scripted-{message.pk}"


@pytest.fixture
def scripted_channel(settings):
    """Both channels send through ScriptedChannel; set `.outcomes` to make sends fail."""
    ScriptedChannel.outcomes = []
    ScriptedChannel.sent = []
    settings.LOYALTY_MESSAGE_CHANNELS = {
        "email": "tests.messaging.conftest.ScriptedChannel",
        "sms": "tests.messaging.conftest.ScriptedChannel",
    }
    return ScriptedChannel
