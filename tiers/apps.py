from django.apps import AppConfig
from django.db.backends.signals import connection_created
from django.utils.translation import gettext_lazy as _


class TiersConfig(AppConfig):
    name = "tiers"
    verbose_name = _("Tiers and growth")

    def ready(self):
        from .windows import register_sqlite_functions

        connection_created.connect(register_sqlite_functions, dispatch_uid="tiers.sqlite_functions")
