"""The admin's skin and navigation (django-unfold's UNFOLD setting): titles, colours, the sidebar of the operator
console. A part of the settings kept apart because it is long and changes with the console, not with a deployment."""
from django.urls import reverse_lazy
from django.utils.translation import gettext_lazy as _

UNFOLD = {
    "SITE_TITLE": _("Loyalty CRM"),
    "SITE_HEADER": _("Loyalty CRM"),
    "SITE_SYMBOL": "loyalty",
    "SHOW_HISTORY": True,
    "SHOW_VIEW_ON_SITE": False,
    # The language menu (English / 简体中文) under the user menu; it posts to set_language (config.urls, /i18n/).
    "SHOW_LANGUAGES": True,
    "SIDEBAR": {
        "show_search": True,
        "show_all_applications": True,
        "navigation": [
            {
                "title": _("Membership"),
                "items": [
                    {"title": _("Members"), "icon": "group", "link": reverse_lazy("admin:members_member_changelist")},
                    {"title": _("Orders"), "icon": "shopping_cart", "link": reverse_lazy("admin:members_order_changelist")},
                    {"title": _("Tiers"), "icon": "military_tech", "link": reverse_lazy("admin:tiers_tier_changelist")},
                    {"title": _("Tier changes"), "icon": "trending_up", "link": reverse_lazy("admin:tiers_tierchange_changelist")},
                    {"title": _("Growth events"), "icon": "show_chart", "link": reverse_lazy("admin:tiers_growthevent_changelist")},
                    {"title": _("Tier rules"), "icon": "rule", "link": reverse_lazy("admin:tiers_tierpolicy_changelist")},
                    {"title": _("Perks"), "icon": "workspace_premium", "link": reverse_lazy("admin:tiers_benefit_changelist")},
                    {"title": _("Import runs"), "icon": "upload_file", "link": reverse_lazy("admin:members_importrun_changelist")},
                    {"title": _("Tags"), "icon": "sell", "link": reverse_lazy("admin:members_tag_changelist")},
                ],
            },
            {
                "title": _("Points"),
                "items": [
                    {
                        "title": _("Points ledger"),
                        "icon": "account_balance",
                        "link": reverse_lazy("admin:points_pointstransaction_changelist"),
                    },
                    {"title": _("Rewards"), "icon": "redeem", "link": reverse_lazy("admin:points_reward_changelist")},
                    {
                        "title": _("Redemptions"),
                        "icon": "receipt_long",
                        "link": reverse_lazy("admin:points_redemption_changelist"),
                    },
                    {"title": _("Liability"), "icon": "savings", "link": reverse_lazy("admin:points_liability")},
                    {
                        "title": _("Adjustment requests"),
                        "icon": "approval",
                        "link": reverse_lazy("admin:points_pointsadjustmentrequest_changelist"),
                    },
                    {
                        "title": _("Points policy"),
                        "icon": "tune",
                        "link": reverse_lazy("admin:points_pointspolicy_changelist"),
                    },
                ],
            },
            {
                "title": _("Campaigns"),
                "items": [
                    {"title": _("Segments"), "icon": "filter_alt", "link": reverse_lazy("admin:campaigns_segment_changelist")},
                    {"title": _("Campaigns"), "icon": "campaign", "link": reverse_lazy("admin:campaigns_campaign_changelist")},
                    {"title": _("Campaign grants"), "icon": "card_giftcard", "link": reverse_lazy("admin:campaigns_campaigngrant_changelist")},
                ],
            },
            {
                "title": _("Engagement"),
                "items": [
                    {"title": _("Coupons"), "icon": "confirmation_number", "link": reverse_lazy("admin:engagement_coupon_changelist")},
                    {"title": _("Referrals"), "icon": "group_add", "link": reverse_lazy("admin:engagement_referral_changelist")},
                    {"title": _("Check-ins"), "icon": "event_available", "link": reverse_lazy("admin:engagement_checkin_changelist")},
                    {"title": _("Member events"), "icon": "rate_review", "link": reverse_lazy("admin:engagement_engagementevent_changelist")},
                    {"title": _("Badges"), "icon": "emoji_events", "link": reverse_lazy("admin:engagement_badge_changelist")},
                    {"title": _("Awarded badges"), "icon": "military_tech", "link": reverse_lazy("admin:engagement_memberbadge_changelist")},
                    {"title": _("Check-in rules"), "icon": "calendar_today", "link": reverse_lazy("admin:engagement_checkinrule_changelist")},
                    {"title": _("Referral rules"), "icon": "handshake", "link": reverse_lazy("admin:engagement_referralrule_changelist")},
                    {"title": _("Event rules"), "icon": "tune", "link": reverse_lazy("admin:engagement_engagementrule_changelist")},
                ],
            },
            {
                "title": _("Messages"),
                "items": [
                    {"title": _("Outbox"), "icon": "outbox", "link": reverse_lazy("admin:messaging_message_changelist")},
                    {
                        "title": _("Message templates"),
                        "icon": "mail",
                        "link": reverse_lazy("admin:messaging_messagetemplate_changelist"),
                    },
                ],
            },
            {
                "title": _("Webhooks"),
                "items": [
                    {
                        "title": _("Webhook subscriptions"),
                        "icon": "webhook",
                        "link": reverse_lazy("admin:webhooks_webhooksubscription_changelist"),
                    },
                    {
                        "title": _("Webhook deliveries"),
                        "icon": "send",
                        "link": reverse_lazy("admin:webhooks_webhookdelivery_changelist"),
                    },
                ],
            },
            {
                "title": _("Jobs"),
                "items": [
                    {"title": _("Job runs"), "icon": "history", "link": reverse_lazy("admin:members_jobrun_changelist")},
                    {
                        "title": _("Schedules"),
                        "icon": "schedule",
                        "link": reverse_lazy("admin:django_celery_beat_periodictask_changelist"),
                    },
                    {
                        "title": _("Crontabs"),
                        "icon": "calendar_month",
                        "link": reverse_lazy("admin:django_celery_beat_crontabschedule_changelist"),
                    },
                ],
            },
            {
                "title": _("Settings"),
                "items": [
                    {"title": _("API keys"), "icon": "key", "link": reverse_lazy("admin:members_apikey_changelist")},
                    {"title": _("Staff users"), "icon": "person", "link": reverse_lazy("admin:auth_user_changelist")},
                    {"title": _("Roles"), "icon": "badge", "link": reverse_lazy("admin:auth_group_changelist")},
                    {"title": _("Audit log"), "icon": "manage_search", "link": reverse_lazy("admin:console_auditentry_changelist")},
                    {
                        "title": _("Login lockouts"),
                        "icon": "lock_person",
                        "link": reverse_lazy("admin:axes_accessattempt_changelist"),
                        "permission": "members.staff_login.superuser_only",
                    },
                ],
            },
        ],
    },
}
