import django.core.validators
from django.db import migrations, models

import members.models
from members.jobs import Schedule, install_schedules, uninstall_schedules

SCHEDULES = [
    # After the tier recalculation (02:00) and the birthday bonus (02:30); independent of both, but the night's
    # heavier jobs then never overlap.
    Schedule(
        name="Members: RFM and activity refresh",
        task="members.refresh_rfm",
        minute="0",
        hour="3",
        description="Nightly: recency, frequency and monetary scores, RFM segments and activity statuses.",
    ),
]


def install(apps, schema_editor):
    install_schedules(apps, SCHEDULES)


def uninstall(apps, schema_editor):
    uninstall_schedules(apps, SCHEDULES)


class Migration(migrations.Migration):
    """RFM scores and segment, activity status and birthday month on Member (with the indexes segment filters use),
    Tag and Member.tags, and the nightly members.refresh_rfm schedule (members/jobs.py)."""

    dependencies = [
        ('members', '0011_job_schedules'),
    ]

    operations = [
        migrations.CreateModel(
            name='Tag',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('name', models.CharField(max_length=50, unique=True, verbose_name='name')),
                ('color', models.CharField(default='#6b7280', max_length=7, validators=[django.core.validators.RegexValidator('^#[0-9a-fA-F]{6}$', 'A colour like #1d4ed8.')], verbose_name='colour')),
                ('created_at', models.DateTimeField(auto_now_add=True, verbose_name='created at')),
            ],
            options={
                'verbose_name': 'tag',
                'verbose_name_plural': 'tags',
                'ordering': ['name'],
            },
        ),
        migrations.AddField(
            model_name='member',
            name='activity_status',
            field=models.CharField(choices=[('active', 'active'), ('dormant', 'dormant'), ('churn_risk', 'churn risk'), ('no_purchase', 'no purchase yet')], db_default='no_purchase', default='no_purchase', max_length=16, verbose_name='activity'),
        ),
        migrations.AddField(
            model_name='member',
            name='rfm_frequency',
            field=models.PositiveSmallIntegerField(blank=True, null=True, verbose_name='frequency score'),
        ),
        migrations.AddField(
            model_name='member',
            name='rfm_monetary',
            field=models.PositiveSmallIntegerField(blank=True, null=True, verbose_name='monetary score'),
        ),
        migrations.AddField(
            model_name='member',
            name='rfm_recency',
            field=models.PositiveSmallIntegerField(blank=True, null=True, verbose_name='recency score'),
        ),
        migrations.AddField(
            model_name='member',
            name='rfm_segment',
            field=models.CharField(blank=True, choices=[('champions', 'champions'), ('loyal', 'loyal'), ('potential_loyalists', 'potential loyalists'), ('new_customers', 'new customers'), ('promising', 'promising'), ('need_attention', 'need attention'), ('about_to_sleep', 'about to sleep'), ('at_risk', 'at risk'), ('cant_lose', "can't lose them"), ('hibernating', 'hibernating'), ('lost', 'lost')], db_default='', default='', max_length=24, verbose_name='RFM segment'),
        ),
        migrations.AddField(
            model_name='member',
            name='rfm_updated_at',
            field=models.DateTimeField(blank=True, null=True, verbose_name='RFM last changed'),
        ),
        migrations.AddField(
            model_name='member',
            name='tags',
            field=models.ManyToManyField(blank=True, related_name='members', to='members.tag', verbose_name='tags'),
        ),
        migrations.AddField(
            model_name='member',
            name='birthday_month',
            field=models.GeneratedField(db_persist=True, expression=members.models.MonthOf('birthday'), output_field=models.PositiveSmallIntegerField(), verbose_name='birthday month'),
        ),
        migrations.AddIndex(
            model_name='member',
            index=models.Index(fields=['rfm_segment'], name='member_rfm_segment_idx'),
        ),
        migrations.AddIndex(
            model_name='member',
            index=models.Index(fields=['activity_status'], name='member_activity_idx'),
        ),
        migrations.AddIndex(
            model_name='member',
            index=models.Index(fields=['birthday_month'], name='member_birthday_month_idx'),
        ),
        migrations.AddIndex(
            model_name='member',
            index=models.Index(fields=['region'], name='member_region_idx'),
        ),
        migrations.AddIndex(
            model_name='member',
            index=models.Index(fields=['order_count'], name='member_order_count_idx'),
        ),
        migrations.AddIndex(
            model_name='member',
            index=models.Index(fields=['lifetime_spend'], name='member_lifetime_spend_idx'),
        ),
        migrations.AddConstraint(
            model_name='member',
            constraint=models.CheckConstraint(condition=models.Q(('rfm_recency__isnull', True), models.Q(('rfm_recency__gte', 1), ('rfm_recency__lte', 5)), _connector='OR'), name='member_rfm_recency_1_to_5'),
        ),
        migrations.AddConstraint(
            model_name='member',
            constraint=models.CheckConstraint(condition=models.Q(('rfm_frequency__isnull', True), models.Q(('rfm_frequency__gte', 1), ('rfm_frequency__lte', 5)), _connector='OR'), name='member_rfm_frequency_1_to_5'),
        ),
        migrations.AddConstraint(
            model_name='member',
            constraint=models.CheckConstraint(condition=models.Q(('rfm_monetary__isnull', True), models.Q(('rfm_monetary__gte', 1), ('rfm_monetary__lte', 5)), _connector='OR'), name='member_rfm_monetary_1_to_5'),
        ),
        migrations.RunPython(install, uninstall),
    ]
