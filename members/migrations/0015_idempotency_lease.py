"""The lease of an Idempotency-Key claim: ApiIdempotencyRecord.claimed_at (members.idempotency).

Existing rows get the migration's moment as `claimed_at` (one constant default: no rewrite of a large table): a claim
left by a request that died before the upgrade is taken over one lease after it, rather than never.
"""
import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("members", "0014_big_table_indexes"),
    ]

    operations = [
        migrations.AddField(
            model_name="apiidempotencyrecord",
            name="claimed_at",
            field=models.DateTimeField(
                default=django.utils.timezone.now,
                help_text="When the request holding the key started (or took it over).",
                verbose_name="claimed at",
            ),
        ),
    ]
