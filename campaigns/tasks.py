"""Campaign tasks: thin wrappers around campaigns.services. Schedules: campaigns/migrations/0002_campaigns.py.

- `campaigns.run_grants`: a one-off campaign's grants, sent when it starts running (launch, resume, or its start
  reached). A JobRun job whose period names the campaign and the minute it was started ("campaign 12
  2026-03-02T10:15"): a second delivery of the same start does nothing, a crashed run is resumed by the next delivery
  or by "Resume" in Jobs › Job runs. Its work is idempotent anyway (one grant per campaign and member).
- `campaigns.update_statuses` (every five minutes): start scheduled campaigns, finish those past their end. Plain
  task: each change is a locked, checked transition, so a repeat does nothing.
- `campaigns.birthday_gifts` (02:40, after the tier birthday bonus), `campaigns.win_back` (10:30),
  `campaigns.expiry_reminder_gifts` (09:50, before messaging's 10:00 reminder), `campaigns.tier_up_gifts` (hourly at
  :15, before messaging's :20 congratulation): the triggered campaigns' daily and hourly jobs, JobRun jobs.
- `campaigns.dashboard_warm` (every ten minutes; campaigns/migrations/0003): recomputes the admin dashboard's default
  period into the cache (campaigns.dashboard), so the index never waits for aggregates over millions of rows. Plain
  task: it only reads, and a repeat only refreshes.
"""
from dataclasses import asdict
from datetime import date

from celery import shared_task
from django.conf import settings
from django.utils import translation

from members.jobs import Job, JobTask, day_period, hour_period

from .dashboard.cache import dashboard_warm as dashboard_warm_into_cache
from .services import (
    GrantRunResult,
    campaign_grants_run,
    campaign_id_of_period,
    campaigns_birthday_gifts,
    campaigns_expiry_reminder_gifts,
    campaigns_tier_up_gifts,
    campaigns_update_statuses,
    campaigns_win_back,
)


def _zero_counts() -> dict:
    return dict.fromkeys(GrantRunResult().counts(), 0)


@shared_task(name="campaigns.run_grants", base=JobTask, bind=True)
def run_grants(self, period: str, user_id: int | None = None) -> dict:
    """A one-off campaign's grants to its audience (the campaign id is in the period)."""
    campaign_id = campaign_id_of_period(period)

    def work(job: Job) -> None:
        campaign_grants_run(
            campaign_id=campaign_id,
            after=job.cursor,
            on_batch=lambda last_member_id, batch: job.progress(cursor=last_member_id, counts=batch.counts()),
        )
        job.progress(counts=_zero_counts())  # every count shows, zeros included

    return self.run_job(period=period, work=work, params={"campaign": campaign_id}, user_id=user_id)


@shared_task(name="campaigns.dashboard_warm", soft_time_limit=9 * 60, time_limit=10 * 60)
def dashboard_warm() -> list[str]:
    """Every ten minutes: the dashboard's default period, computed into the cache in the site's language."""
    with translation.override(settings.LANGUAGE_CODE):
        return dashboard_warm_into_cache()


@shared_task(name="campaigns.update_statuses", soft_time_limit=5 * 60, time_limit=6 * 60)
def update_statuses() -> dict:
    """Every five minutes: scheduled campaigns start at their start, running and paused ones finish at their end."""
    return asdict(campaigns_update_statuses())


def _triggered_work(service, **kwargs):
    def work(job: Job) -> None:
        # Campaigns are run one after another, each from its first member: what a batch rewarded is found again as
        # rewarded (NOT EXISTS), so the cursor is only a progress mark and a resumed run repeats no reward.
        service(
            now=job.as_of,
            on_batch=lambda _last_id, batch: job.progress(counts=batch.counts()),
            **{name: value(job) for name, value in kwargs.items()},
        )
        job.progress(counts=_zero_counts())

    return work


def _period_day(job: Job) -> date:
    try:
        return date.fromisoformat(job.run.period)
    except ValueError:  # "manual ...": the local day of the first claim
        return date.fromisoformat(day_period(job.as_of))


@shared_task(name="campaigns.birthday_gifts", base=JobTask, bind=True)
def birthday_gifts(self, period: str | None = None, user_id: int | None = None) -> dict:
    """Nightly: the birthday campaigns' gifts for members whose birthday is the period's day."""
    return self.run_job(
        period=period or day_period(), work=_triggered_work(campaigns_birthday_gifts, day=_period_day), user_id=user_id
    )


@shared_task(name="campaigns.win_back", base=JobTask, bind=True)
def win_back(self, period: str | None = None, user_id: int | None = None) -> dict:
    """Daily: the win-back campaigns' packages for members dormant for the campaign's days."""
    return self.run_job(period=period or day_period(), work=_triggered_work(campaigns_win_back), user_id=user_id)


@shared_task(name="campaigns.tier_up_gifts", base=JobTask, bind=True)
def tier_up_gifts(self, period: str | None = None, user_id: int | None = None) -> dict:
    """Hourly: the tier-up campaigns' gifts for recent upgrades not covered yet (the nightly recalculation's)."""
    return self.run_job(period=period or hour_period(), work=_triggered_work(campaigns_tier_up_gifts), user_id=user_id)


@shared_task(name="campaigns.expiry_reminder_gifts", base=JobTask, bind=True)
def expiry_reminder_gifts(self, period: str | None = None, user_id: int | None = None) -> dict:
    """Daily: the points-expiry reminder campaigns' gifts (and reminders) to members whose points expire soon."""
    return self.run_job(
        period=period or day_period(), work=_triggered_work(campaigns_expiry_reminder_gifts), user_id=user_id
    )
