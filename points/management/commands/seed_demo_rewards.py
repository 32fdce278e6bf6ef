"""`manage.py seed_demo_rewards`: a small rewards catalogue for the local demo (safe to run twice)."""
from decimal import Decimal

from django.core.management.base import BaseCommand

from points.models import Reward
from tiers.models import Tier

CATALOGUE = [
    # code, name, kind, points cost, face value, stock, per-member limit, minimum tier code
    ("voucher-5", "¥5 voucher · 5元无门槛券", Reward.Kind.CASH_VOUCHER, 500, "5.00", None, None, None),
    ("voucher-20", "¥20 voucher on ¥199 · 满199减20券", Reward.Kind.COUPON, 1500, "20.00", None, 5, None),
    ("tote-bag", "Canvas tote bag · 帆布袋", Reward.Kind.GIFT, 2500, None, 300, 1, None),
    ("express-shipping", "Free express shipping · 顺丰包邮", Reward.Kind.SERVICE, 800, None, None, None, "silver"),
    ("thermos", "Vacuum flask · 保温杯", Reward.Kind.GIFT, 6000, None, 80, 1, "gold"),
    ("tree-planting", "Plant a tree · 公益植树", Reward.Kind.CHARITY, 1000, None, None, None, None),
]


class Command(BaseCommand):
    help = "Create the demo rewards catalogue if it is not there."

    def handle(self, *args, **options):
        tiers = {tier.code: tier for tier in Tier.objects.all()}
        created = 0
        for code, name, kind, cost, value, stock, limit, tier in CATALOGUE:
            _reward, was_created = Reward.objects.get_or_create(
                code=code,
                defaults={
                    "name": name,
                    "kind": kind,
                    "points_cost": cost,
                    "value": Decimal(value) if value else None,
                    "stock": stock,
                    "per_member_limit": limit,
                    "min_tier": tiers.get(tier) if tier else None,
                },
            )
            created += was_created
        self.stdout.write(f"Demo rewards: {created} created, {len(CATALOGUE) - created} already there.")
