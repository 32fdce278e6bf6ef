"""Sending a Celery task by its registered name, so that a service queues work without importing its tasks module.

The tasks modules are thin wrappers that import the services; a service importing its tasks back (even inside a
function) would close an import circle. So a service names the task ("engagement.reward_referrer") and this module
finds it in the registry of the project's Celery app: `celery.current_app` (config.celery, without importing the
composition root), after `import_default_modules` has run Celery's autodiscovery of every app's tasks module (a web
process may never have imported them). It sends with `apply_async`, which keeps CELERY_TASK_ALWAYS_EAGER (the task
runs in process without a broker), where `send_task` would ignore it. members.jobs.job_enqueue does the same for the
JobRun jobs.
"""
from celery import current_app


def task_send(name: str, **kwargs) -> None:
    """Send the task registered as `name` with these keyword arguments: on a worker when Celery has a broker, in
    process otherwise. Call it from `transaction.on_commit`, so a rolled-back write sends nothing."""
    app = current_app
    app.loader.import_default_modules()
    app.tasks[name].apply_async(kwargs=kwargs)
