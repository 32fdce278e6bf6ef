"""Message tasks: thin wrappers around the services.

- `messaging.send_message(message_id)`: queued on commit for a message due at once.
- `messaging.send_due_messages`: every minute under beat, the sweep that sends deferred messages (quiet hours,
  send_after), retries after backoff, and messages whose worker died; also started on commit after a batch.
- `messaging.queue_tier_up_messages` (hourly) and `messaging.queue_expiry_reminders` (daily): scheduled jobs, each
  run a JobRun (members.jobs: one per period, resumed from its cursor after a crash).
Schedules: campaigns/messaging/migrations/0003_job_schedules.py.
"""
from dataclasses import asdict

from celery import shared_task

from members.jobs import Job, JobTask, day_period, hour_period

from .services import message_send, messages_send_due
from .triggers import messages_queue_expiry_reminders, messages_queue_tier_ups
from .webhooks import points_expiring_emit

# The sweep stops taking new batches after this many seconds (the next sweep, a minute later, goes on), so sweeps
# do not pile up behind a slow provider.
SEND_TIME_BUDGET = 50


@shared_task(name="messaging.send_message")
def send_message(message_id: int) -> str:
    return message_send(message_id=message_id)


@shared_task(name="messaging.send_due_messages", soft_time_limit=10 * 60, time_limit=11 * 60)
def send_due_messages() -> dict:
    return asdict(messages_send_due(time_budget=SEND_TIME_BUDGET))


def _queue_work(service):
    def work(job: Job) -> None:
        result = service(
            now=job.as_of,
            after=job.cursor,
            on_batch=lambda last_id, batch: job.progress(cursor=last_id, counts=batch.counts()),
        )
        job.progress(counts=dict.fromkeys(result.counts(), 0))  # every count shows, zeros included

    return work


@shared_task(name="messaging.queue_tier_up_messages", base=JobTask, bind=True)
def queue_tier_up_messages(self, period: str | None = None, user_id: int | None = None) -> dict:
    """Hourly: a congratulation for every recent upgrade not messaged yet."""
    return self.run_job(period=period or hour_period(), work=_queue_work(messages_queue_tier_ups), user_id=user_id)


@shared_task(name="messaging.queue_expiry_reminders", base=JobTask, bind=True)
def queue_expiry_reminders(self, period: str | None = None, user_id: int | None = None) -> dict:
    """Daily: a reminder to members whose points expire soon, once per member and expiry month."""
    return self.run_job(
        period=period or day_period(), work=_queue_work(messages_queue_expiry_reminders), user_id=user_id
    )


# Named in the webhooks app's namespace (its schedule, members/webhooks/migrations/0002_schedules.py).
@shared_task(name="webhooks.emit_points_expiring", base=JobTask, bind=True)
def emit_points_expiring(self, period: str | None = None, user_id: int | None = None) -> dict:
    """Daily: points.expiring for members whose points expire soon, once per member and expiry month."""

    def work(job: Job) -> None:
        points_expiring_emit(
            now=job.as_of,
            after=job.cursor,
            on_batch=lambda last_id, emitted: job.progress(cursor=last_id, counts={"deliveries": emitted}),
        )
        job.progress(counts={"deliveries": 0})  # the count shows, zero included

    return self.run_job(period=period or day_period(), work=work, user_id=user_id)
