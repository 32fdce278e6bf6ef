"""The engagement rules a programme starts with (staff edit them in the admin): check-in and referral rewards, points
for reviews and shares, and a starter badge wall."""
from decimal import Decimal

from django.db import migrations

# kind, name, points, daily cap
DEFAULT_EVENT_RULES = [
    ("review", "Review", 10, 3),
    ("photo-review", "Photo review (晒单)", 20, 3),
    ("share", "Share", 2, 5),
]

# code, name, description, icon, criterion, threshold, tier code, position
DEFAULT_BADGES = [
    ("first-order", "First order", "Placed a first order.", "shopping_bag", "first_order", Decimal("1"), None, 10),
    ("regular", "Regular", "Ten orders placed.", "repeat", "orders", Decimal("10"), None, 20),
    ("streak-7", "Seven-day streak", "Checked in seven days in a row.", "local_fire_department", "checkin_streak",
     Decimal("7"), None, 30),
    ("streak-30", "Thirty-day streak", "Checked in thirty days in a row.", "whatshot", "checkin_streak",
     Decimal("30"), None, 40),
    ("ambassador", "Ambassador", "Three friends referred who placed an order.", "diversity_3", "referrals",
     Decimal("3"), None, 50),
    ("gold", "Gold member", "Reached the Gold tier.", "workspace_premium", "tier", Decimal("0"), "gold", 60),
    ("big-spender", "Big spender", "Spent 10,000 in total.", "diamond", "spend", Decimal("10000"), None, 70),
]


def create_defaults(apps, schema_editor):
    CheckInRule = apps.get_model("engagement", "CheckInRule")
    ReferralRule = apps.get_model("engagement", "ReferralRule")
    EngagementRule = apps.get_model("engagement", "EngagementRule")
    Badge = apps.get_model("engagement", "Badge")
    Tier = apps.get_model("tiers", "Tier")
    CheckInRule.objects.get_or_create(pk=1)
    ReferralRule.objects.get_or_create(pk=1)
    for kind, name, points, cap in DEFAULT_EVENT_RULES:
        EngagementRule.objects.get_or_create(kind=kind, defaults={"name": name, "points": points, "daily_cap": cap})
    for code, name, description, icon, criterion, threshold, tier_code, position in DEFAULT_BADGES:
        tier = None
        if tier_code:
            tier = Tier.objects.filter(code=tier_code).first()
            if tier is None:
                continue  # a ladder without that tier: staff add such badges themselves
        Badge.objects.get_or_create(
            code=code,
            defaults={
                "name": name,
                "description": description,
                "icon": icon,
                "criterion": criterion,
                "threshold": threshold,
                "tier": tier,
                "position": position,
            },
        )


class Migration(migrations.Migration):
    dependencies = [
        ("engagement", "0001_initial"),
        ("tiers", "0002_default_ladder"),
    ]
    operations = [migrations.RunPython(create_defaults, migrations.RunPython.noop)]
