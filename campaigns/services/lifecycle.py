"""Campaign lifecycle: the checks before launch, launch, pause, resume and finish, and the scheduled start and end.

Every change locks the campaign row (select_for_update), checks the transition and records a CampaignEvent. A one-off
grant campaign that starts running sends its grant job (`campaigns.run_grants`, campaigns.services.grants does the
work) after the commit, by the task's registered name through members.jobs.job_enqueue: this module never imports
campaigns.tasks, which imports it (the tasks are thin wrappers around the services, so the import runs one way).
"""
from dataclasses import dataclass
from datetime import datetime

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from campaigns.engagement.errors import InvalidCoupon
from campaigns.engagement.services import coupon_terms
from campaigns.messaging.models import MessageTemplate
from members.jobs import job_enqueue
from members.stored_text import stored_text

from ..errors import CampaignStatusConflict, InvalidCampaign
from ..models import Campaign, CampaignEvent

Kind = Campaign.Kind
Status = Campaign.Status

# Grants given by the one-off job after launch; every other kind rewards as things happen.
ONE_OFF_KINDS = (Kind.BONUS_POINTS, Kind.COUPON_GRANT)
# Kinds whose reward is points and/or a coupon given to a member by a trigger.
TRIGGERED_KINDS = (Kind.WELCOME, Kind.BIRTHDAY, Kind.REFERRAL, Kind.WIN_BACK, Kind.TIER_UP, Kind.EXPIRY_REMINDER)
LAUNCH_PERMISSION = "campaigns.launch_campaign"
# The registered name of the one-off grant job (campaigns.tasks.run_grants).
RUN_GRANTS_TASK = "campaigns.run_grants"


# --- Checking a campaign before launch ----------------------------------------------------------------------------


def campaign_problems(campaign: Campaign) -> dict[str, str]:
    """What keeps the campaign from launching, by field ({} when nothing does). The admin form shows the same."""
    problems = {}
    if campaign.kind == Kind.MULTIPLIER:
        if campaign.factor is None or campaign.factor <= 1:
            problems["factor"] = _("A multiplier campaign needs a factor above 1 (2.00 = double points).")
        for name in ("categories", "channels"):
            value = getattr(campaign, name)
            if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
                problems[name] = _("A list of names, e.g. [\"shoes\", \"bags\"].")
    elif campaign.kind == Kind.BONUS_POINTS:
        if campaign.points <= 0:
            problems["points"] = _("A bonus points campaign gives each member some points.")
    elif campaign.kind == Kind.COUPON_GRANT:
        if not campaign.coupon_kind:
            problems["coupon_kind"] = _("A coupon campaign needs a coupon kind.")
    elif campaign.points <= 0 and not campaign.coupon_kind and not campaign.template_code:
        problems["points"] = _("Give points, a coupon or a message.")
    if campaign.coupon_kind:
        try:
            coupon_terms(
                kind=campaign.coupon_kind, value=campaign.coupon_value, min_spend=campaign.coupon_min_spend,
                valid_days=campaign.coupon_valid_days,
            )
        except InvalidCoupon as exc:
            problems[{"value": "coupon_value", "min_spend": "coupon_min_spend", "valid_days": "coupon_valid_days"}.get(
                exc.field, "coupon_kind")] = str(exc.detail)
    codes = {campaign.template_code} if campaign.template_code else set()
    if campaign.pk is not None:
        variants = list(campaign.variants.all())
        codes |= {variant.template_code for variant in variants if variant.template_code}
        if variants and sum(variant.weight for variant in variants) <= 0:
            problems["variants"] = _("The variants' weights add up to 0.")
        if variants and all(variant.is_control for variant in variants):
            problems["variants"] = _("Every variant is a control arm: nobody would be rewarded.")
    known = set(MessageTemplate.objects.filter(code__in=codes).values_list("code", flat=True))
    if codes - known:
        problems["template_code"] = _("No message template with the code %(code)s.") % {
            "code": ", ".join(sorted(codes - known))
        }
    if campaign.starts_at and campaign.ends_at and campaign.ends_at <= campaign.starts_at:
        problems["ends_at"] = _("A campaign ends after it starts.")
    if campaign.ends_at and campaign.ends_at <= timezone.now() and campaign.status in (Status.DRAFT, Status.SCHEDULED):
        problems["ends_at"] = _("This end is in the past.")
    return problems


# --- Status changes -----------------------------------------------------------------------------------------------


def _campaign_locked(campaign: Campaign) -> Campaign:
    return Campaign.objects.select_for_update().get(pk=campaign.pk)


def status_set(campaign: Campaign, status: str, *, action: str, user=None, note: str = "") -> None:
    """Move a (locked) campaign to `status` and record the event."""
    previous = campaign.status
    campaign.status = status
    campaign.status_note = note[:200]
    campaign.updated_by = user if user is not None else campaign.updated_by
    campaign.save(update_fields=["status", "status_note", "updated_by", "updated_at", "launched_at", "launched_by",
                                 "starts_at"])
    CampaignEvent.objects.create(
        campaign=campaign, action=action, from_status=previous, to_status=status, note=note[:200], created_by=user
    )


def _check_permission(user) -> None:
    if user is not None and not user.has_perm(LAUNCH_PERMISSION):
        raise PermissionDenied(_("You may not launch, pause, resume or finish campaigns."))


def campaign_launch(*, campaign: Campaign, user) -> Campaign:
    """Launch a draft: it runs from its start (now when empty or past), or waits as scheduled until then (the
    update_statuses job starts it). Launching a scheduled campaign starts it now. A one-off grant campaign starts its
    grant job when it runs. Needs the launch permission; refuses a campaign with problems (InvalidCampaign)."""
    _check_permission(user)
    with transaction.atomic():
        campaign = _campaign_locked(campaign)
        if campaign.status not in (Status.DRAFT, Status.SCHEDULED):
            raise CampaignStatusConflict(
                _("Only a draft or scheduled campaign can be launched; this one is %(status)s.")
                % {"status": campaign.get_status_display()}
            )
        problems = campaign_problems(campaign)
        if problems:
            field_name, message = next(iter(problems.items()))
            raise InvalidCampaign(message, field=field_name)
        now = timezone.now()
        campaign.launched_at, campaign.launched_by = now, user
        if campaign.status == Status.SCHEDULED and campaign.starts_at is not None and campaign.starts_at > now:
            campaign.starts_at = now  # launching a scheduled campaign starts it now
        elif campaign.starts_at is not None and campaign.starts_at > now:
            status_set(campaign, Status.SCHEDULED, action=CampaignEvent.Action.LAUNCH, user=user,
                       note=stored_text(gettext_lazy("starts %(at)s"),
                                        {"at": f"{timezone.localtime(campaign.starts_at):%Y-%m-%d %H:%M}"}))
            return campaign
        campaign.starts_at = campaign.starts_at or now
        status_set(campaign, Status.RUNNING, action=CampaignEvent.Action.LAUNCH, user=user)
        _start_grants_on_commit(campaign, user)
        return campaign


def campaign_pause(*, campaign: Campaign, user) -> Campaign:
    """Pause a running campaign: no multiplier, trigger or grant batch rewards anyone until it is resumed (a grant
    job stops at its next batch)."""
    return _transition(campaign, user, {Status.RUNNING}, Status.PAUSED, CampaignEvent.Action.PAUSE)


def campaign_resume(*, campaign: Campaign, user) -> Campaign:
    """Resume a paused campaign; a one-off grant campaign goes on granting to the members not rewarded yet."""
    campaign = _transition(campaign, user, {Status.PAUSED}, Status.RUNNING, CampaignEvent.Action.RESUME)
    return campaign


def campaign_finish(*, campaign: Campaign, user, note: str = "") -> Campaign:
    """Finish a campaign for good (from any status but finished): nothing more is granted."""
    return _transition(
        campaign, user, {Status.DRAFT, Status.SCHEDULED, Status.RUNNING, Status.PAUSED}, Status.FINISHED,
        CampaignEvent.Action.FINISH, note=note,
    )


def _transition(campaign, user, allowed, status, action, note="") -> Campaign:
    _check_permission(user)
    with transaction.atomic():
        campaign = _campaign_locked(campaign)
        if campaign.status not in allowed:
            raise CampaignStatusConflict(
                _("The campaign is %(status)s: it cannot be %(action)s.")
                % {"status": campaign.get_status_display(), "action": CampaignEvent.Action(action).label}
            )
        status_set(campaign, status, action=action, user=user, note=note)
        if status == Status.RUNNING:
            _start_grants_on_commit(campaign, user)
        return campaign


def _start_grants_on_commit(campaign: Campaign, user=None) -> None:
    """A running one-off campaign's grant job, sent after the commit (on a worker, or in process without a broker)."""
    if campaign.kind not in ONE_OFF_KINDS:
        return
    # By the task's registered name (members.jobs.job_enqueue), not through campaigns.tasks: the tasks are thin
    # wrappers that import these services, so importing them back would close an import circle.
    job_enqueue(task_name=RUN_GRANTS_TASK, user=user, period=grants_period(campaign.pk))


def grants_period(campaign_id: int, moment: datetime | None = None) -> str:
    """The JobRun period of a grant run: the campaign and the local minute it was started ("campaign 12
    2026-03-02T10:15"), so a double click runs once and a resume later is a run of its own."""
    return f"campaign {campaign_id} {timezone.localtime(moment or timezone.now()):%Y-%m-%dT%H:%M}"


def campaign_id_of_period(period: str) -> int:
    parts = period.split()
    if len(parts) < 2 or parts[0] != "campaign" or not parts[1].isdigit():
        raise ValueError(f"not a campaign grant period: {period!r}")
    return int(parts[1])


@dataclass
class StatusUpdate:
    started: int = 0
    finished: int = 0


def campaigns_update_statuses(*, now: datetime | None = None) -> StatusUpdate:
    """Start scheduled campaigns whose start has come and finish those whose end has passed (the update_statuses
    job, every five minutes). Each change locks its campaign and is recorded as an event."""
    now = now or timezone.now()
    result = StatusUpdate()
    ended = stored_text(gettext_lazy("ended"))
    due_start = Campaign.objects.filter(status=Status.SCHEDULED, starts_at__lte=now).values_list("pk", flat=True)
    for campaign_id in list(due_start):
        with transaction.atomic():
            campaign = Campaign.objects.select_for_update().get(pk=campaign_id)
            if campaign.status != Status.SCHEDULED or campaign.starts_at is None or campaign.starts_at > now:
                continue
            if campaign.ends_at is not None and campaign.ends_at <= now:
                status_set(campaign, Status.FINISHED, action=CampaignEvent.Action.FINISH, note=ended)
                result.finished += 1
                continue
            status_set(campaign, Status.RUNNING, action=CampaignEvent.Action.START)
            _start_grants_on_commit(campaign, campaign.launched_by)
            result.started += 1
    due_end = Campaign.objects.filter(
        status__in=(Status.RUNNING, Status.PAUSED), ends_at__lte=now
    ).values_list("pk", flat=True)
    for campaign_id in list(due_end):
        with transaction.atomic():
            campaign = Campaign.objects.select_for_update().get(pk=campaign_id)
            if campaign.status not in (Status.RUNNING, Status.PAUSED):
                continue
            if campaign.ends_at is None or campaign.ends_at > now:
                continue
            status_set(campaign, Status.FINISHED, action=CampaignEvent.Action.FINISH, note=ended)
            result.finished += 1
    return result
