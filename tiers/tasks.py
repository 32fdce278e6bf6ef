"""Scheduled tier jobs: thin wrappers around the services (see CELERY_BEAT_SCHEDULE in config/settings.py)."""
from celery import shared_task

from .services import tiers_recalculate


@shared_task(name="tiers.recalculate_tiers")
def recalculate_tiers() -> dict:
    result = tiers_recalculate()
    return {"refreshed": result.refreshed, "changes": dict(result.changes)}
