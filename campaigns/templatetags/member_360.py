"""The member 360 on the member page: `{% load member_360 %}{% member_360 original %}` in
templates/admin/members/member/member_360.html, which MemberAdmin shows above the change form
(`change_form_outer_before_template`). The data is campaigns.dashboard.member_page.member_360."""
from django import template

from campaigns.dashboard.member_page import member_360 as member_360_data

register = template.Library()


@register.inclusion_tag("admin/members/member/member_360_panel.html", takes_context=True)
def member_360(context, member):
    request = context.get("request")
    if member is None or getattr(member, "pk", None) is None or request is None:
        return {"show": False}  # the add page
    return {"show": True, "csrf_token": context.get("csrf_token"), **member_360_data(member, request.user)}
