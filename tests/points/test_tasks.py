"""The scheduled points jobs run the services (eagerly here: no broker in tests) and report their JobRun's counts
(the runs themselves: tests/jobs)."""
from datetime import timedelta
from unittest import mock

import pytest
from django.utils import timezone

from points.services import points_earn
from points.tasks import expire_points, release_pending_points

pytestmark = pytest.mark.django_db


def test_expire_points_task_expires_due_lots(member):
    points_earn(member=member, amount=40, idempotency_key="a", expires_at=timezone.now() + timedelta(days=1))

    with mock.patch("django.utils.timezone.now", return_value=timezone.now() + timedelta(days=2)):
        result = expire_points.delay().get()

    member.refresh_from_db()
    assert (result["counts"]["points"], member.points_balance) == (40, 0)


def test_release_pending_points_task_reports_nothing_when_nothing_is_due(member):
    assert release_pending_points.delay().get()["counts"] == {"members": 0, "lots": 0, "points": 0}
