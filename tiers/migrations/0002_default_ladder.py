"""The default ladder a new programme starts with; staff edit it in the admin. Growth is 1 per currency unit by
default, so Silver is reached after about ¥1,000 of purchases."""
from decimal import Decimal

from django.db import migrations

DEFAULT_LADDER = [
    # code, name, rank, min_growth, multiplier, discount %, free shipping, birthday bonus
    ("member", "Member", 0, None, Decimal("1.00"), Decimal("0"), False, 0),
    ("silver", "Silver", 1, 1000, Decimal("1.25"), Decimal("2"), False, 100),
    ("gold", "Gold", 2, 5000, Decimal("1.50"), Decimal("5"), True, 300),
    ("diamond", "Diamond", 3, 20000, Decimal("2.00"), Decimal("8"), True, 1000),
]


def create_ladder(apps, schema_editor):
    Tier = apps.get_model("tiers", "Tier")
    if Tier.objects.exists():
        return
    for code, name, rank, min_growth, multiplier, discount, free_shipping, birthday_bonus in DEFAULT_LADDER:
        Tier.objects.create(
            code=code,
            name=name,
            rank=rank,
            min_growth=min_growth,
            points_multiplier=multiplier,
            discount_percent=discount,
            free_shipping=free_shipping,
            birthday_bonus_points=birthday_bonus,
        )


class Migration(migrations.Migration):
    dependencies = [("tiers", "0001_initial")]
    operations = [migrations.RunPython(create_ladder, migrations.RunPython.noop)]
