"""The dashboard's jobs card: every schedule with its last run and its next run (members.jobs.schedules_overview).

`{% load jobs_dashboard %}{% jobs_dashboard %}` in templates/admin/index.html; shown to staff who may view job runs.
"""
from datetime import timedelta

from django import template
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.http import urlencode
from django.utils.translation import gettext as _

from members.jobs import schedules_overview
from members.models import JobRun

register = template.Library()

STATUS_VARIANTS = {
    JobRun.Status.RUNNING: "info",
    JobRun.Status.COMPLETED: "success",
    JobRun.Status.FAILED: "danger",
}


def _when(moment) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M") if moment else "—"


def _label(text: str, variant: str, href: str = "") -> str:
    return render_to_string("unfold/helpers/label.html", {"text": text, "variant": variant, "href": href})


@register.inclusion_tag("admin/members/jobs_dashboard.html", takes_context=True)
def jobs_dashboard(context):
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not user.has_perm("members.view_jobrun"):
        return {"show": False}
    runs_url = reverse("admin:members_jobrun_changelist")
    may_see_schedules = user.has_perm("django_celery_beat.view_periodictask")
    rows = []
    for row in schedules_overview():
        name = (
            format_html('<a href="{}" class="text-primary-600">{}</a>',
                        reverse("admin:django_celery_beat_periodictask_change", args=[row.periodic_task_id]), row.name)
            if may_see_schedules else row.name
        )
        run = row.last_run
        if run is None:
            last = "—"
        else:
            href = reverse("admin:members_jobrun_change", args=[run.pk])
            last = format_html(
                "{} {}", _label(run.get_status_display(), STATUS_VARIANTS.get(run.status, ""), href),
                _when(run.finished_at or run.started_at),
            )
        history = format_html('<a href="{}?{}" class="text-primary-600">{}</a>', runs_url,
                              urlencode({"job": row.task}), _("history"))
        rows.append([name, row.schedule, last, _when(row.next_run) if row.enabled else _("disabled"), history])
    failed = JobRun.objects.filter(status=JobRun.Status.FAILED, started_at__gte=timezone.now() - timedelta(days=7))
    return {
        "show": True,
        "table": {
            "headers": [_("schedule"), _("when"), _("last run"), _("next run"), ""],
            "rows": rows,
        },
        "failed_count": failed.count(),
        "failed_url": f"{runs_url}?{urlencode({'status': JobRun.Status.FAILED})}",
    }
