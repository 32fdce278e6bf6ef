"""Campaigns (kinds, schedule, caps, budget), their A/B variants, grants (unique per campaign, member and occasion)
and audit events; and the schedules of the campaign jobs (members.jobs.install_schedules: created only when missing,
by name, so staff's edits survive a re-run)."""
import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models

from members.jobs import Schedule, install_schedules, uninstall_schedules

SCHEDULES = [
    Schedule(
        name="Campaigns: start and finish on schedule",
        task="campaigns.update_statuses",
        minute="*/5",
        description="Every five minutes: scheduled campaigns start at their start, running ones finish at their end.",
    ),
    # Before messaging's congratulation at :20, so a tier-up campaign's message (with its gift) is the one sent.
    Schedule(
        name="Campaigns: tier-up gifts",
        task="campaigns.tier_up_gifts",
        minute="15",
        description="Hourly: tier-up campaigns' gifts for recent upgrades (the nightly recalculation's).",
    ),
    # After the tier birthday bonus (02:30), which a birthday campaign adds to.
    Schedule(
        name="Campaigns: birthday gifts",
        task="campaigns.birthday_gifts",
        minute="40",
        hour="2",
        description="Nightly: birthday campaigns' gifts for members whose birthday is today, once a year.",
    ),
    # Before messaging's reminder at 10:00: the campaign's reminder (with its gift) takes the reminder's place.
    Schedule(
        name="Campaigns: points-expiry reminder gifts",
        task="campaigns.expiry_reminder_gifts",
        minute="50",
        hour="9",
        description="Daily: expiry reminder campaigns' gifts and reminders to members whose points expire soon.",
    ),
    # Mid-morning, outside the quiet hours.
    Schedule(
        name="Campaigns: win-back",
        task="campaigns.win_back",
        minute="30",
        hour="10",
        description="Daily: win-back campaigns' packages for members dormant for the campaign's days, once each.",
    ),
]


def install(apps, schema_editor):
    install_schedules(apps, SCHEDULES)


def uninstall(apps, schema_editor):
    uninstall_schedules(apps, SCHEDULES)


class Migration(migrations.Migration):

    dependencies = [
        ('campaigns', '0001_segments'),
        ('engagement', '0001_initial'),
        ('members', '0011_job_schedules'),
        ('django_celery_beat', '0019_alter_periodictasks_options'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='Campaign',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('name', models.CharField(max_length=120, verbose_name='name')),
                ('description', models.TextField(blank=True, verbose_name='description')),
                ('kind', models.CharField(choices=[('multiplier', 'points multiplier on orders'), ('bonus_points', 'one-off bonus points'), ('coupon_grant', 'one-off coupon'), ('welcome', 'welcome on sign-up'), ('birthday', 'birthday gift'), ('referral', 'referral reward'), ('win_back', 'win-back for dormant members'), ('tier_up', 'tier-up congratulation'), ('expiry_reminder', 'points-expiry reminder')], max_length=20, verbose_name='kind')),
                ('status', models.CharField(choices=[('draft', 'draft'), ('scheduled', 'scheduled'), ('running', 'running'), ('paused', 'paused'), ('finished', 'finished')], default='draft', max_length=20, verbose_name='status')),
                ('status_note', models.CharField(blank=True, help_text='Why it stopped, e.g. “budget exhausted”.', max_length=200, verbose_name='status note')),
                ('starts_at', models.DateTimeField(blank=True, help_text='Empty: when launched.', null=True, verbose_name='starts at')),
                ('ends_at', models.DateTimeField(blank=True, help_text='Empty: until finished by hand.', null=True, verbose_name='ends at')),
                ('factor', models.DecimalField(decimal_places=2, default='2.00', help_text="Multiplier campaigns: 2.00 = double points. Applied on top of the tier's multiplier.", max_digits=5, verbose_name='points factor')),
                ('categories', models.JSONField(blank=True, default=list, help_text='Multiplier campaigns: only orders in these categories. Empty: all.', verbose_name='categories')),
                ('channels', models.JSONField(blank=True, default=list, help_text='Multiplier campaigns: only orders from these channels. Empty: all.', verbose_name='order channels')),
                ('points', models.PositiveIntegerField(default=0, verbose_name='points per member')),
                ('coupon_kind', models.CharField(blank=True, choices=[('amount', 'amount off'), ('percent', 'percent off'), ('free_shipping', 'free shipping')], help_text='Empty: no coupon.', max_length=20, verbose_name='coupon kind')),
                ('coupon_value', models.DecimalField(decimal_places=2, default=0, help_text='Amount off, or percent off (1-100).', max_digits=12, verbose_name='coupon value')),
                ('coupon_min_spend', models.DecimalField(decimal_places=2, default=0, max_digits=12, verbose_name='coupon minimum spend')),
                ('coupon_valid_days', models.PositiveIntegerField(blank=True, help_text='Empty: the coupon never expires.', null=True, verbose_name='coupon valid for (days)')),
                ('per_member_cap', models.PositiveIntegerField(blank=True, help_text='At most this many points (multiplier and points campaigns) or coupons per member over the whole campaign. Empty: no cap.', null=True, verbose_name='cap per member')),
                ('budget_points', models.PositiveBigIntegerField(blank=True, help_text='Empty: no limit.', null=True, verbose_name='points budget')),
                ('budget_coupons', models.PositiveIntegerField(blank=True, help_text='Empty: no limit.', null=True, verbose_name='coupons budget')),
                ('spent_points', models.PositiveBigIntegerField(default=0, editable=False, verbose_name='points granted')),
                ('spent_coupons', models.PositiveIntegerField(default=0, editable=False, verbose_name='coupons granted')),
                ('dormant_days', models.PositiveIntegerField(default=60, help_text='Win-back: members whose last order is at least this old.', verbose_name='dormant after (days)')),
                ('template_code', models.SlugField(blank=True, help_text='Code of the message template sent with each reward (Messages › Message templates). Empty: no message.', max_length=64, verbose_name='message template')),
                ('conversion_days', models.PositiveSmallIntegerField(default=14, help_text='A/B results: a member converts when they place a paid order within this many days of their reward.', verbose_name='conversion window (days)')),
                ('launched_at', models.DateTimeField(blank=True, editable=False, null=True, verbose_name='launched at')),
                ('created_at', models.DateTimeField(auto_now_add=True, verbose_name='created at')),
                ('updated_at', models.DateTimeField(auto_now=True, verbose_name='updated at')),
                ('created_by', models.ForeignKey(blank=True, editable=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL, verbose_name='created by')),
                ('launched_by', models.ForeignKey(blank=True, editable=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL, verbose_name='launched by')),
                ('segment', models.ForeignKey(blank=True, help_text='Empty: every member.', null=True, on_delete=django.db.models.deletion.PROTECT, related_name='campaigns', to='campaigns.segment', verbose_name='audience')),
                ('updated_by', models.ForeignKey(blank=True, editable=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL, verbose_name='updated by')),
            ],
            options={
                'verbose_name': 'campaign',
                'verbose_name_plural': 'campaigns',
                'ordering': ['-created_at', '-id'],
                'permissions': [('launch_campaign', 'Can launch, pause, resume and finish campaigns')],
            },
        ),
        migrations.CreateModel(
            name='CampaignEvent',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('action', models.CharField(choices=[('launch', 'launched'), ('start', 'started'), ('pause', 'paused'), ('resume', 'resumed'), ('finish', 'finished'), ('budget_exhausted', 'budget exhausted'), ('grants_done', 'grants done')], max_length=20, verbose_name='action')),
                ('from_status', models.CharField(blank=True, choices=[('draft', 'draft'), ('scheduled', 'scheduled'), ('running', 'running'), ('paused', 'paused'), ('finished', 'finished')], max_length=20, verbose_name='from')),
                ('to_status', models.CharField(blank=True, choices=[('draft', 'draft'), ('scheduled', 'scheduled'), ('running', 'running'), ('paused', 'paused'), ('finished', 'finished')], max_length=20, verbose_name='to')),
                ('note', models.CharField(blank=True, max_length=200, verbose_name='note')),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now, verbose_name='at')),
                ('campaign', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='events', to='campaigns.campaign', verbose_name='campaign')),
                ('created_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL, verbose_name='by')),
            ],
            options={
                'verbose_name': 'campaign event',
                'verbose_name_plural': 'campaign events',
                'ordering': ['-created_at', '-id'],
            },
        ),
        migrations.CreateModel(
            name='CampaignVariant',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('name', models.CharField(max_length=60, verbose_name='name')),
                ('weight', models.PositiveIntegerField(default=1, help_text='Relative share of the audience.', verbose_name='weight')),
                ('is_control', models.BooleanField(default=False, verbose_name='control (holdout)')),
                ('points', models.PositiveIntegerField(blank=True, help_text="Empty: the campaign's.", null=True, verbose_name='points per member')),
                ('factor', models.DecimalField(blank=True, decimal_places=2, help_text="Empty: the campaign's.", max_digits=5, null=True, verbose_name='points factor')),
                ('coupon_value', models.DecimalField(blank=True, decimal_places=2, help_text="Empty: the campaign's.", max_digits=12, null=True, verbose_name='coupon value')),
                ('template_code', models.SlugField(blank=True, help_text="Empty: the campaign's.", max_length=64, verbose_name='message template')),
                ('campaign', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='variants', to='campaigns.campaign', verbose_name='campaign')),
            ],
            options={
                'verbose_name': 'variant',
                'verbose_name_plural': 'variants',
                'ordering': ['campaign', 'id'],
            },
        ),
        migrations.CreateModel(
            name='CampaignGrant',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('occasion', models.CharField(blank=True, default='', help_text='Empty for one reward per member; a year (birthday), a referral or a tier for recurring triggers.', max_length=64, verbose_name='occasion')),
                ('is_control', models.BooleanField(default=False, verbose_name='control (held out)')),
                ('points', models.BigIntegerField(default=0, verbose_name='points')),
                ('reference', models.CharField(blank=True, help_text='e.g. the order or tier change', max_length=64, verbose_name='reference')),
                ('granted_at', models.DateTimeField(default=django.utils.timezone.now, verbose_name='granted at')),
                ('campaign', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='grants', to='campaigns.campaign', verbose_name='campaign')),
                ('coupon', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='engagement.coupon', verbose_name='coupon')),
                ('member', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='campaign_grants', to='members.member', verbose_name='member')),
                ('variant', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='grants', to='campaigns.campaignvariant', verbose_name='variant')),
            ],
            options={
                'verbose_name': 'campaign grant',
                'verbose_name_plural': 'campaign grants',
                'ordering': ['-granted_at', '-id'],
            },
        ),
        migrations.AddIndex(
            model_name='campaign',
            index=models.Index(fields=['kind', 'status'], name='campaign_kind_status_idx'),
        ),
        migrations.AddConstraint(
            model_name='campaign',
            constraint=models.CheckConstraint(condition=models.Q(('factor__gte', 1)), name='campaign_factor_at_least_one'),
        ),
        migrations.AddConstraint(
            model_name='campaign',
            constraint=models.CheckConstraint(condition=models.Q(('budget_points__isnull', True), ('spent_points__lte', models.F('budget_points')), _connector='OR'), name='campaign_points_within_budget'),
        ),
        migrations.AddConstraint(
            model_name='campaign',
            constraint=models.CheckConstraint(condition=models.Q(('budget_coupons__isnull', True), ('spent_coupons__lte', models.F('budget_coupons')), _connector='OR'), name='campaign_coupons_within_budget'),
        ),
        migrations.AddConstraint(
            model_name='campaign',
            constraint=models.CheckConstraint(condition=models.Q(('starts_at__isnull', True), ('ends_at__isnull', True), ('ends_at__gt', models.F('starts_at')), _connector='OR'), name='campaign_window_ordered'),
        ),
        migrations.AddConstraint(
            model_name='campaign',
            constraint=models.CheckConstraint(condition=models.Q(('coupon_value__gte', 0), ('coupon_min_spend__gte', 0)), name='campaign_coupon_amounts_non_negative'),
        ),
        migrations.AddConstraint(
            model_name='campaignvariant',
            constraint=models.UniqueConstraint(fields=('campaign', 'name'), name='campaign_variant_name_unique'),
        ),
        migrations.AddConstraint(
            model_name='campaignvariant',
            constraint=models.CheckConstraint(condition=models.Q(('factor__isnull', True), ('factor__gte', 1), _connector='OR'), name='variant_factor_at_least_one'),
        ),
        migrations.AddIndex(
            model_name='campaigngrant',
            index=models.Index(fields=['member', '-granted_at'], name='campaign_grant_member_idx'),
        ),
        migrations.AddIndex(
            model_name='campaigngrant',
            index=models.Index(fields=['campaign', 'variant'], name='campaign_grant_arm_idx'),
        ),
        migrations.AddConstraint(
            model_name='campaigngrant',
            constraint=models.UniqueConstraint(fields=('campaign', 'member', 'occasion'), name='campaign_grant_once_per_member'),
        ),
        migrations.AddConstraint(
            model_name='campaigngrant',
            constraint=models.CheckConstraint(condition=models.Q(('is_control', False), models.Q(('points', 0), ('coupon__isnull', True)), _connector='OR'), name='campaign_grant_control_gets_nothing'),
        ),
        migrations.RunPython(install, uninstall),
    ]
