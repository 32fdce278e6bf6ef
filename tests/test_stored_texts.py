"""Texts stored in the database are in the site's language, whatever the language of the request that wrote them."""

import pytest
from django.utils import translation

from campaigns.engagement.services import checkin_record
from points.models import PointsTransaction

pytestmark = pytest.mark.django_db


def test_a_ledger_note_written_during_a_chinese_request_is_stored_in_the_sites_language(member, settings):
    settings.LANGUAGE_CODE = "en"

    with translation.override("zh-hans"):
        checkin_record(member=member)

    note = PointsTransaction.objects.filter(member=member, reference__startswith="check-in:").get().note
    assert note == "Check-in, day 1 of a streak"


def test_the_chinese_catalogue_has_that_note_so_the_test_above_can_fail():
    with translation.override("zh-hans"):
        assert str(translation.gettext("Check-in, day %(streak)s of a streak")) != "Check-in, day %(streak)s of a streak"
