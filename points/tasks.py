"""Scheduled points jobs: thin wrappers around the services (see CELERY_BEAT_SCHEDULE in config/settings.py)."""
from dataclasses import asdict

from celery import shared_task

from .services import points_expire_due, points_release_due


@shared_task(name="points.expire_points")
def expire_points() -> dict:
    return asdict(points_expire_due())


@shared_task(name="points.release_pending_points")
def release_pending_points() -> dict:
    return asdict(points_release_due())
