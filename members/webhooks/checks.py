"""System checks for the webhook destination settings (webhooks.destinations), run by `manage.py check` and at
start-up: a misspelt allowed network fails the deploy instead of the first delivery."""
from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from .destinations import allowed_on_purpose


@checks.register()
def allowed_networks_check(app_configs=None, **kwargs):
    try:
        allowed_on_purpose()
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), hint="Networks are written like 10.1.0.0/16 or fd00::/8.", id="webhooks.E001")]
    return []


@checks.register(checks.Tags.security, deploy=True)
def loopback_allowed_check(app_configs=None, **kwargs):
    if settings.LOYALTY_WEBHOOK_ALLOW_LOOPBACK and not settings.DEBUG:
        return [checks.Warning(
            "LOYALTY_WEBHOOK_ALLOW_LOOPBACK is on: webhook subscriptions may reach services on this machine.",
            hint="Leave it unset in production (it follows DEBUG).", id="webhooks.W001",
        )]
    return []
