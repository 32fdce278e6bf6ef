from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ConsoleConfig(AppConfig):
    """The operator console's own rooms: staff roles (console.roles) and the audit log of staff changes
    (console.audit). It sits below members: the apps' admins import it, it imports none of them."""

    name = "members.console"
    label = "console"
    verbose_name = _("Operator console")

    def ready(self):
        from .big_tables import unfold_headers_once

        unfold_headers_once()
