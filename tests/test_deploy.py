"""Production readiness: with DEBUG=0 and production-like environment values the deploy checks are clean,
static files are collected with a manifest (served by WhiteNoise) and the admin login renders with them."""
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parent.parent


def manage(*args, **env_overrides):
    # The browser tests allow Django's ORM inside Playwright's event loop for this process; a deployment does not.
    ignored = ("DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "DJANGO_ALLOW_ASYNC_UNSAFE", "REDIS_URL", "LOYALTY_SINGLE_PROCESS")
    env = {k: v for k, v in os.environ.items() if k not in ignored}
    env.update(env_overrides)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120
    )


PRODUCTION = {
    "DEBUG": "0",
    "SECRET_KEY": secrets.token_urlsafe(50),
    "ALLOWED_HOSTS": "loyalty.example.com",
    # Shared state (rate limits, caches): checked only, never connected to by `check`.
    "REDIS_URL": "redis://127.0.0.1:6379/15",
}


def test_deploy_checks_are_clean_with_production_settings():
    result = manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)

    assert result.returncode == 0, result.stdout + result.stderr


def test_deploy_checks_refuse_the_demo_secret_key():
    result = manage("check", "--deploy", "--fail-level", "WARNING", **{**PRODUCTION, "SECRET_KEY": ""})

    assert result.returncode != 0
    assert "security.W009" in result.stdout + result.stderr


def without(settings, *names):
    return {name: value for name, value in settings.items() if name not in names}


def test_deploy_checks_refuse_production_without_redis():
    # Without Redis every gunicorn worker keeps its own rate limits and caches: N workers allow N times the limit.
    result = manage("check", "--deploy", **without(PRODUCTION, "REDIS_URL"))

    assert result.returncode != 0
    assert "loyalty.E001" in result.stdout + result.stderr


def test_deploy_checks_accept_no_redis_for_a_declared_single_process():
    result = manage("check", "--deploy", "--fail-level", "WARNING",
                    **without(PRODUCTION, "REDIS_URL"), LOYALTY_SINGLE_PROCESS="1")

    assert result.returncode == 0, result.stdout + result.stderr


def test_plain_checks_in_development_need_no_redis():
    result = manage("check", "--fail-level", "WARNING", DEBUG="1")

    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.django_db
def test_collected_static_files_serve_the_admin_login(tmp_path, settings, client):
    result = manage("collectstatic", "--no-input", STATIC_ROOT=str(tmp_path), **PRODUCTION)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "staticfiles.json").exists()

    settings.STATIC_ROOT = tmp_path
    settings.STORAGES = {**settings.STORAGES, "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"}}
    response = client.get("/admin/login/")

    assert response.status_code == 200
    assert b"/static/unfold/" in response.content
