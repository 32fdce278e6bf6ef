from django.apps import AppConfig
from django.core.signals import setting_changed
from django.utils.translation import gettext_lazy as _

from .hooks import configured_hooks_forget


class MembersConfig(AppConfig):
    name = "members"
    verbose_name = _("Membership")

    def ready(self):
        from . import checks  # noqa: F401  (registers the deployment checks)

        # The LOYALTY_*_HANDLERS / *_SECTIONS lists are imported once; a test that overrides one must see the change.
        setting_changed.connect(configured_hooks_forget, dispatch_uid="members.configured_hooks")
