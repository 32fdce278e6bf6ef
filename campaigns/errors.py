"""Campaign domain errors, each with a stable code (see members.errors for the families and their HTTP statuses:
InvalidInput 400, NotFound 404, Conflict 409)."""
from django.utils.translation import gettext_lazy as _

from members.errors import Conflict, InvalidInput


# --- Campaigns ---------------------------------------------------------------------------------------------------
class InvalidCampaign(InvalidInput):
    code = "invalid_campaign"


class CampaignStatusConflict(Conflict):
    code = "campaign_status_conflict"
    default_detail = _("The campaign cannot do this in its current status.")

