"""The destination settings checked at start-up (`manage.py check`): a misspelt network in
LOYALTY_WEBHOOK_ALLOWED_NETWORKS is an error at once, not at the first delivery; loopback destinations allowed in
production are a deployment warning."""
from django.core import checks


def check_ids(*, deploy=False) -> set:
    return {message.id for message in checks.run_checks(include_deployment_checks=deploy)}


def test_a_misspelt_allowed_network_is_an_error_of_manage_py_check(settings):
    settings.LOYALTY_WEBHOOK_ALLOWED_NETWORKS = ["10.1.0.0/33", "hooks.internal"]

    assert "webhooks.E001" in check_ids()

    settings.LOYALTY_WEBHOOK_ALLOWED_NETWORKS = ["10.1.0.0/16", "hooks.internal", "fd00::/8"]
    assert "webhooks.E001" not in check_ids()


def test_loopback_destinations_allowed_without_debug_are_a_deployment_warning(settings):
    settings.DEBUG = False
    settings.LOYALTY_WEBHOOK_ALLOW_LOOPBACK = True

    assert "webhooks.W001" in check_ids(deploy=True)

    settings.LOYALTY_WEBHOOK_ALLOW_LOOPBACK = False
    assert "webhooks.W001" not in check_ids(deploy=True)
