"""The jobs in the admin: the JobRun list (read-only, filtered by status and job), "Run now" and "Resume" for staff
allowed to run jobs, and the dashboard's table of schedules with their last and next run."""
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse
from django_celery_beat.models import PeriodicTask

from members.jobs import LEASE
from members.models import JobRun

from .conftest import NOW

pytestmark = pytest.mark.django_db

RUNS = reverse("admin:members_jobrun_changelist")
SCHEDULES = reverse("admin:django_celery_beat_periodictask_changelist")


def staff_with(client, *codenames):
    user = User.objects.create_user("ops", password="not-a-real-password", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client.force_login(user)
    return user


def run_action(client, url, action, *objects):
    return client.post(url, {"action": action, "_selected_action": [obj.pk for obj in objects]}, follow=True)


@pytest.fixture
def runs(clock):
    return [
        JobRun.objects.create(job="tiers.recalculate_tiers", period="2026-03-01", status=JobRun.Status.COMPLETED,
                              finished_at=NOW - timedelta(days=1), counts={"downgrade": 3}),
        JobRun.objects.create(job="points.birthday_bonus", period="2026-03-02", status=JobRun.Status.FAILED,
                              finished_at=NOW, error="Traceback ...\nOperationalError: the database went away"),
    ]


def test_the_job_run_list_filters_by_status_and_by_job(admin_client, runs):
    failed = admin_client.get(RUNS, {"status": "failed"})
    tiers = admin_client.get(RUNS, {"job": "tiers.recalculate_tiers"})

    assert [run.job for run in failed.context["cl"].result_list] == ["points.birthday_bonus"]
    assert [run.period for run in tiers.context["cl"].result_list] == ["2026-03-01"]


def test_a_failed_run_shows_its_error(admin_client, runs):
    response = admin_client.get(reverse("admin:members_jobrun_change", args=[runs[1].pk]))

    assert "OperationalError: the database went away" in response.content.decode()


def test_job_runs_are_read_only(admin_client, runs):
    url = reverse("admin:members_jobrun_change", args=[runs[0].pk])

    assert admin_client.post(url, {"status": "failed"}).status_code == 403
    assert admin_client.get(reverse("admin:members_jobrun_add")).status_code == 403
    assert JobRun.objects.get(pk=runs[0].pk).status == JobRun.Status.COMPLETED


def test_run_now_sends_the_job_as_a_run_of_its_own_recorded_with_who_started_it(
    client, clock, birthday_member, django_capture_on_commit_callbacks
):
    birthday_member()
    staff = staff_with(client, "view_periodictask", "run_jobs")
    schedule = PeriodicTask.objects.get(task="points.birthday_bonus")

    with django_capture_on_commit_callbacks(execute=True):
        response = run_action(client, SCHEDULES, "run_now", schedule)

    run = JobRun.objects.get()
    assert response.status_code == 200
    assert (run.job, run.period, run.status) == ("points.birthday_bonus", "manual 2026-03-02 03:00", "completed")
    assert run.triggered_by == staff
    assert run.counts["members"] == 1


def test_staff_without_the_run_jobs_permission_cannot_run_a_job_now(client, clock):
    staff_with(client, "view_periodictask", "change_periodictask")
    schedule = PeriodicTask.objects.get(task="points.birthday_bonus")

    page = client.get(SCHEDULES)
    run_action(client, SCHEDULES, "run_now", schedule)

    assert "run_now" not in dict(page.context["action_form"].fields["action"].choices)
    assert not JobRun.objects.exists()


def test_resume_sends_a_failed_run_again_for_its_own_period_and_leaves_live_and_finished_ones(
    client, clock, runs, django_capture_on_commit_callbacks
):
    staff_with(client, "view_jobrun", "run_jobs")
    live = JobRun.objects.create(job="points.expire_points", period="2026-03-02T03", heartbeat_at=NOW - LEASE / 2)

    with django_capture_on_commit_callbacks(execute=True):
        run_action(client, RUNS, "resume_runs", *runs, live)

    resumed = JobRun.objects.get(pk=runs[1].pk)
    assert (resumed.status, resumed.attempts, resumed.error) == (JobRun.Status.COMPLETED, 2, "")
    assert JobRun.objects.get(pk=live.pk).status == JobRun.Status.RUNNING
    assert JobRun.objects.count() == 3


def test_the_dashboard_lists_every_schedule_with_its_last_and_next_run(admin_client, runs):
    page = admin_client.get(reverse("admin:index")).content.decode()

    assert "Scheduled jobs" in page
    for name in PeriodicTask.objects.values_list("name", flat=True):
        assert name in page
    assert "2026-03-03 02:00" in page  # the nightly recalculation's next run, local time
    assert "2026-03-02 03:05" in page  # the hourly expiry's
    assert "1 job run failed in the last 7 days." in page


def test_the_dashboard_shows_no_jobs_to_staff_who_may_not_see_them(client, runs):
    staff_with(client, "view_member")

    page = client.get(reverse("admin:index")).content.decode()

    assert "Scheduled jobs" not in page
