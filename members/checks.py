"""System checks of the deployment (`manage.py check --deploy`), registered by MembersConfig.ready."""
from django.conf import settings
from django.core.checks import Error, Tags, register


@register(Tags.caches, deploy=True)
def shared_state_check(app_configs=None, **kwargs):
    """Production needs Redis: without REDIS_URL the cache is per process, so every gunicorn worker (and every Celery
    worker) keeps its own API rate limits, idempotency keys, dashboard and leaderboard caches and webhook subscription
    cache: four workers allow four times the rate limit, and a change is seen by one process only. A deployment that
    runs one process on purpose says so with LOYALTY_SINGLE_PROCESS=1."""
    if settings.DEBUG or settings.REDIS_URL or settings.LOYALTY_SINGLE_PROCESS:
        return []
    return [
        Error(
            "REDIS_URL is not set: rate limits, caches and webhook subscription caches would be kept per process.",
            hint="Set REDIS_URL (e.g. redis://redis:6379/0), or LOYALTY_SINGLE_PROCESS=1 if this deployment runs a "
            "single process on purpose.",
            id="loyalty.E001",
        )
    ]
