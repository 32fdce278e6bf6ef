"""Staff roles: four Groups and their permissions, listed by codename per app label.

The roles migration (console/migrations/0002_roles.py) and the permission tests read ROLES. A later model or
permission is added to a role by editing ROLES and adding a migration that calls `roles_sync` again (it only adds:
whatever staff granted a role by hand in the admin is kept).

Exports are guarded by permissions that exist already: the import-export "Export" buttons by the model's view
permission (IMPORT_EXPORT_EXPORT_PERMISSION_CODE), the liability report and its CSV by points.view_pointstransaction,
a campaign's results CSV by campaigns.view_campaign, a segment's members CSV by campaigns.export_segment.
"""
from django.utils.translation import gettext_noop

# The group names are stored in English (stable: code and migrations look them up by name); gettext_noop marks them
# for translation where they are shown.
MARKETING = gettext_noop("Marketing operator")
ANALYST = gettext_noop("Analyst")
FINANCE = gettext_noop("Finance")
SUPPORT = gettext_noop("Support")


def _crud(*models: str, delete: bool = True) -> list[str]:
    verbs = ("view", "add", "change", "delete") if delete else ("view", "add", "change")
    return [f"{verb}_{model}" for model in models for verb in verbs]


def _view(*models: str) -> list[str]:
    return [f"view_{model}" for model in models]


# Every model of the loyalty apps, for the roles that see everything (analyst) or a whole app.
LOYALTY_MODELS = {
    "members": ("member", "order", "orderrefund", "tag", "importrun", "importrowerror", "jobrun"),
    "tiers": ("tier", "benefit", "tierchange", "tierpolicy", "growthrule", "excludedcategory", "growthevent"),
    "points": ("pointstransaction", "pointsallocation", "pointspolicy", "reward", "redemption",
               "pointsadjustmentrequest"),
    "campaigns": ("segment", "campaign", "campaignvariant", "campaigngrant", "campaignevent"),
    "engagement": ("coupon", "referralrule", "referral", "checkinrule", "checkin", "engagementrule",
                   "engagementevent", "badge", "memberbadge"),
    "messaging": ("messagetemplate", "message"),
}

ROLES: dict[str, dict[str, list[str]]] = {
    # Runs the programme day to day: members' profiles and tags, segments, campaigns, coupons, rewards, badges,
    # message templates, imports. Sees tiers and points; never adjusts the ledger, edits the tier ladder or rules,
    # API keys or staff users.
    MARKETING: {
        "members": [
            "view_member", "change_member", *_crud("tag"), "view_order", "view_importrun", "view_importrowerror",
            "import_data",
        ],
        "tiers": _view(*LOYALTY_MODELS["tiers"]),
        "points": [*_view("pointstransaction", "pointspolicy", "redemption"), *_crud("reward")],
        "campaigns": [
            *_crud("segment", "campaign", "campaignvariant"), "export_segment", "launch_campaign",
            *_view("campaigngrant", "campaignevent"),
        ],
        "engagement": [
            *_crud("coupon", delete=False), *_crud("badge"), *_view("referral", "checkin", "engagementevent",
                                                                    "memberbadge"),
            *_view("referralrule", "checkinrule", "engagementrule"),
            "change_referralrule", "change_checkinrule", "change_engagementrule",
        ],
        "messaging": [*_crud("messagetemplate"), "view_message"],
    },
    # Reads everything in the loyalty apps and downloads it (exports need the view permission, segment exports
    # their own); changes nothing.
    ANALYST: {
        **{app: _view(*models) for app, models in LOYALTY_MODELS.items()},
        "campaigns": [*_view(*LOYALTY_MODELS["campaigns"]), "export_segment"],
    },
    # The ledger's owners: the liability report, adjustments of any size, approving large ones (four eyes),
    # cancelling redemptions, the points policy.
    FINANCE: {
        "members": _view("member", "order", "orderrefund"),
        "tiers": _view("tier"),
        "points": [
            *_view(*LOYALTY_MODELS["points"]), "adjust_points", "approve_adjustment", "change_redemption",
            "change_pointspolicy",
        ],
    },
    # Answers members: finds them, their orders and ledger, corrects contact details, and makes small adjustments
    # (up to LOYALTY_SUPPORT_ADJUSTMENT_LIMIT points per member and local day, added up: points.approvals).
    SUPPORT: {
        "members": [*_view("member", "order", "orderrefund", "tag"), "change_member"],
        "tiers": _view("tier", "tierchange"),
        "points": [*_view("pointstransaction", "pointsallocation", "redemption", "reward",
                          "pointsadjustmentrequest"), "adjust_points_small"],
        "engagement": _view("coupon", "checkin", "referral", "memberbadge"),
    },
}


def role_permissions(role: str) -> set[str]:
    """The role's permissions as "app_label.codename", as user.has_perm reads them."""
    return {f"{app}.{codename}" for app, codenames in ROLES[role].items() for codename in codenames}


def roles_sync(apps=None, *, create_missing_permissions: bool = True) -> dict[str, list[str]]:
    """Create the role groups and grant them the permissions in ROLES (adding only). Callable from a data migration
    (pass its `apps`) or at run time. Permissions of models that do not exist yet in `apps` (an older migration
    state) are skipped and returned, so the migration that created the roles keeps running on a fresh database;
    the migration that adds such a model calls roles_sync again."""
    if apps is None:
        from django.apps import apps as global_apps

        apps = global_apps
    if create_missing_permissions:
        _permissions_create(apps)
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    skipped: dict[str, list[str]] = {}
    for role, grants in ROLES.items():
        group, _created = Group.objects.get_or_create(name=role)
        wanted = {(app, codename) for app, codenames in grants.items() for codename in codenames}
        found = list(
            Permission.objects.filter(content_type__app_label__in={app for app, _c in wanted},
                                      codename__in={codename for _a, codename in wanted})
            .values_list("pk", "content_type__app_label", "codename")
        )
        pks = [pk for pk, app, codename in found if (app, codename) in wanted]
        group.permissions.add(*pks)
        missing = wanted - {(app, codename) for _pk, app, codename in found}
        if missing:
            skipped[role] = sorted(f"{app}.{codename}" for app, codename in missing)
    return skipped


def _permissions_create(apps) -> None:
    """Permissions are normally created after `migrate` (post_migrate); a data migration that grants them must create
    them first, from the migration's model state."""
    from django.contrib.auth.management import create_permissions
    from django.contrib.contenttypes.management import create_contenttypes

    for app_config in apps.get_app_configs():
        # Both helpers skip an app whose models_module is empty, which a migration state's app stubs always are.
        models_module = getattr(app_config, "models_module", None)
        app_config.models_module = models_module or True
        try:
            create_contenttypes(app_config, apps=apps, verbosity=0)
            create_permissions(app_config, apps=apps, verbosity=0)
        finally:
            app_config.models_module = models_module
