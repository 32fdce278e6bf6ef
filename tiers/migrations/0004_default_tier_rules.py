"""The tier rules a programme starts with (staff edit them in the admin), validity for the default ladder's upper
rungs, a few named perks, and qualifying spend/orders on growth events recorded before events carried them."""
from decimal import Decimal

from django.db import migrations

# source, growth, daily cap. Orders: growth per currency unit paid (Silver after about ¥1,000 on the default ladder).
DEFAULT_RULES = [
    ("order", Decimal("1"), None),
    ("check_in", Decimal("5"), 5),
    ("review", Decimal("20"), 60),
    ("share", Decimal("5"), 15),
    ("referral", Decimal("100"), 500),
    ("profile", Decimal("50"), None),
]

DEFAULT_PERKS = [
    # code, name, description, tiers
    ("priority-support", "Priority support", "Your calls and chats jump the queue.", ["gold", "diamond"]),
    ("fast-refund", "Fast refunds", "Refunds paid before the parcel is back.", ["gold", "diamond"]),
    ("early-access", "Early access", "New products and flash sales a day early.", ["diamond"]),
]


def create_rules(apps, schema_editor):
    TierPolicy = apps.get_model("tiers", "TierPolicy")
    GrowthRule = apps.get_model("tiers", "GrowthRule")
    Tier = apps.get_model("tiers", "Tier")
    Benefit = apps.get_model("tiers", "Benefit")
    TierPolicy.objects.get_or_create(pk=1)
    for source, growth, cap in DEFAULT_RULES:
        GrowthRule.objects.get_or_create(source=source, defaults={"growth": growth, "daily_cap": cap})
    Tier.objects.filter(code__in=["silver", "gold", "diamond"], validity_months__isnull=True).update(validity_months=12)
    for code, name, description, tier_codes in DEFAULT_PERKS:
        perk, created = Benefit.objects.get_or_create(code=code, defaults={"name": name, "description": description})
        if created:
            perk.tiers.add(*Tier.objects.filter(code__in=tier_codes))


def backfill_event_spend(apps, schema_editor):
    GrowthEvent = apps.get_model("tiers", "GrowthEvent")
    Order = apps.get_model("members", "Order")
    OrderRefund = apps.get_model("members", "OrderRefund")
    for event in GrowthEvent.objects.filter(source="order", orders=0).iterator():
        order = Order.objects.filter(order_id=event.reference).first()
        if order is not None:
            GrowthEvent.objects.filter(pk=event.pk).update(spend=order.amount, orders=1)
    for event in GrowthEvent.objects.filter(source="refund", spend=0).iterator():
        refund = OrderRefund.objects.filter(refund_id=event.idempotency_key.removeprefix("refund:")).first()
        if refund is None:
            continue
        order = Order.objects.get(pk=refund.order_id)
        last = OrderRefund.objects.filter(order=order).order_by("-created_at", "-id").first()
        fully = order.refunded_amount == order.amount and last.pk == refund.pk
        GrowthEvent.objects.filter(pk=event.pk).update(
            spend=-refund.amount, orders=-1 if fully else 0, occurred_at=order.placed_at
        )


class Migration(migrations.Migration):
    dependencies = [("tiers", "0003_tier_rules"), ("members", "0004_tier_rules")]
    operations = [
        migrations.RunPython(create_rules, migrations.RunPython.noop),
        migrations.RunPython(backfill_event_spend, migrations.RunPython.noop),
    ]
