"""Messaging domain errors, each with a stable code (see members.errors for the families and their HTTP statuses)."""
from django.utils.translation import gettext_lazy as _

from members.errors import InvalidInput, NotFound


class TemplateNotFound(NotFound):
    code = "message_template_not_found"
    default_detail = _("No active message template with this code.")
    field = "template_code"


class InvalidTemplate(InvalidInput):
    code = "invalid_message_template"
    default_detail = _("The message template does not render.")


class UnknownChannel(InvalidInput):
    code = "unknown_message_channel"
    default_detail = _("Unknown message channel.")
    field = "channel"
