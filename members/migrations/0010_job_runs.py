import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    """JobRun: one run of a scheduled job per period (members.jobs)."""

    dependencies = [
        ('members', '0009_order_member_index_covered'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='JobRun',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('job', models.CharField(help_text="The task's name, e.g. tiers.recalculate_tiers.", max_length=100, verbose_name='job')),
                ('period', models.CharField(help_text="What the run covers: a local date, an hour, or a manual run's minute.", max_length=40, verbose_name='period')),
                ('status', models.CharField(choices=[('running', 'running'), ('completed', 'completed'), ('failed', 'failed')], default='running', max_length=20, verbose_name='status')),
                ('started_at', models.DateTimeField(default=django.utils.timezone.now, verbose_name='started at')),
                ('finished_at', models.DateTimeField(blank=True, null=True, verbose_name='finished at')),
                ('heartbeat_at', models.DateTimeField(default=django.utils.timezone.now, verbose_name='last heartbeat')),
                ('holder', models.CharField(blank=True, help_text="The claim's token.", max_length=64, verbose_name='held by')),
                ('attempts', models.PositiveIntegerField(default=1, verbose_name='attempts')),
                ('cursor', models.BigIntegerField(default=0, verbose_name='done up to member id')),
                ('counts', models.JSONField(blank=True, default=dict, verbose_name='counts')),
                ('params', models.JSONField(blank=True, default=dict, verbose_name='parameters')),
                ('error', models.TextField(blank=True, verbose_name='error')),
                ('triggered_by', models.ForeignKey(blank=True, help_text='Empty for a scheduled run.', null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL, verbose_name='run by')),
            ],
            options={
                'verbose_name': 'job run',
                'verbose_name_plural': 'job runs',
                'ordering': ['-started_at', '-id'],
                'permissions': [('run_jobs', 'Can run scheduled jobs now')],
                'indexes': [models.Index(fields=['job', '-started_at'], name='job_run_job_started_idx')],
                'constraints': [models.UniqueConstraint(fields=('job', 'period'), name='job_run_once_per_period')],
            },
        ),
    ]
