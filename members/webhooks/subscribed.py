"""The cached answer to "which events has anyone subscribed to?" (key and lifetime), and forgetting it.

Below the models on purpose: a subscription's save() and delete() forget the cached set themselves (every way a row
changes, the admin's form and a plain `objects.create` alike, must clear it), and a model method may not call a
service. `services.subscriber_ids` reads and fills the cache.
"""
import logging

from django.core.cache import cache
from django.db import transaction

logger = logging.getLogger("members.webhooks.services")  # the logger these warnings have always gone to

CACHE_KEY = "webhooks:subscribed-events"
CACHE_SECONDS = 300


def subscriptions_changed() -> None:
    """Forget the cached set of subscribed events (now, and again on commit: a reader in between cached the old)."""
    _cache_delete()
    transaction.on_commit(_cache_delete)


def _cache_delete() -> None:
    try:
        cache.delete(CACHE_KEY)
    except Exception:
        logger.warning("Could not clear the webhook subscriptions cache.", exc_info=True)
