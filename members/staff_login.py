"""The admin login's throttle (django-axes, configured in config/settings.py, AXES_*): who the client is, and the page
a locked-out login gets.

A lockout is per username and address together: someone guessing passwords from one address is stopped for the
cool-off, while the same member of staff logging in from elsewhere is not, and nobody can lock a colleague out from
their own address. A superuser lifts a lockout by deleting it (Settings › Login lockouts).
"""
from django.conf import settings
from django.contrib import admin
from django.shortcuts import render
from django.utils.translation import gettext_lazy as _


def client_ip(request) -> str | None:
    """The address that logs in. Behind the TLS proxy (BEHIND_TLS_PROXY, the production default: SECURE_PROXY_SSL_HEADER
    is set), REMOTE_ADDR is the proxy's, and the client's is the last X-Forwarded-For entry, the one the proxy
    appended; the entries before it are whatever the client sent, so they are never trusted."""
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if settings.SECURE_PROXY_SSL_HEADER and forwarded.strip():
        return forwarded.split(",")[-1].strip()
    return request.META.get("REMOTE_ADDR")


def superuser_only(request) -> bool:
    """Who sees the lockouts (the admins in members.console.admin and their sidebar entry)."""
    return bool(request.user.is_active and request.user.is_superuser)


def lockout_response(request, original_response=None, credentials=None):
    """The lockout page, in the admin's skin (Unfold's login layout) and language; 429 Too Many Requests."""
    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
    context = {
        **admin.site.each_context(request),
        "title": _("Too many failed logins"),
        "failure_limit": settings.AXES_FAILURE_LIMIT,
        "cooloff_minutes": minutes,
    }
    # Rendered now: the middleware hands it back after the view, past the point where a TemplateResponse is rendered.
    return render(request, "admin/login_locked_out.html", context, status=429)
