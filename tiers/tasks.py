"""Scheduled tier jobs: thin wrappers around the services (see CELERY_BEAT_SCHEDULE in config/settings.py)."""
from celery import shared_task

from .services import tiers_recalculate


@shared_task(name="tiers.recalculate_tiers")
def recalculate_tiers() -> dict:
    result = tiers_recalculate()
    return {"refreshed": result.refreshed, "changes": dict(result.changes)}


@shared_task(name="tiers.reevaluate_tiers")
def reevaluate_tiers(mode: str, user_id: int | None = None) -> dict:
    """Staff's re-evaluation after a ladder change (admin: the tier list's buttons)."""
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.filter(pk=user_id).first() if user_id else None
    result = tiers_recalculate(mode=mode, user=user, note="Ladder change re-evaluation.")
    return {"refreshed": result.refreshed, "changes": dict(result.changes)}
