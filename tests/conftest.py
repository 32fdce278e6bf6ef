import os

import pytest
from celery._state import _set_task_join_will_block
from django.db import connection, transaction
from django.test import override_settings
from rest_framework.test import APIClient

from members.models import ApiKey, ApiScope

from .factories import MemberFactory, OrderFactory

POSTGRES_REASON = "needs PostgreSQL: run with DATABASE_URL=postgres://postgres@127.0.0.1:5432/loyalty"


def pytest_collection_modifyitems(config, items):
    on_postgres = connection.vendor == "postgresql"
    if os.environ.get("LOYALTY_REQUIRE_POSTGRES") == "1" and not on_postgres:
        raise pytest.UsageError(f"LOYALTY_REQUIRE_POSTGRES=1 but the database is {connection.vendor}")
    if on_postgres:
        return
    skip = pytest.mark.skip(reason=POSTGRES_REASON)
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def _sqlite_flush_lifts_guard_triggers():
    """The append-only tables (points ledger and allocations, the audit log) refuse DELETE by trigger. Django's flush
    after a transactional test empties tables with TRUNCATE on PostgreSQL, which row triggers do not see, but with
    DELETE on SQLite: there the triggers are dropped for the flush and recreated as they were, in one transaction."""
    if connection.vendor != "sqlite":
        yield
        return
    DatabaseOperations = type(connection.ops)
    original = DatabaseOperations.execute_sql_flush

    def execute_sql_flush(self, sql_list):
        with transaction.atomic(using=self.connection.alias):
            with self.connection.cursor() as cursor:
                cursor.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND sql LIKE '%DELETE ON%'")
                triggers = cursor.fetchall()
                for name, _sql in triggers:
                    cursor.execute(f'DROP TRIGGER "{name}"')
            original(self, sql_list)
            with self.connection.cursor() as cursor:
                for _name, sql in triggers:
                    cursor.execute(sql)

    DatabaseOperations.execute_sql_flush = execute_sql_flush
    yield
    DatabaseOperations.execute_sql_flush = original


@pytest.fixture(scope="session", autouse=True)
def _postgres_flush_deletes():
    """After a transactional test Django empties every table with one TRUNCATE, which on PostgreSQL replaces the files
    of each of the ~60 tables and their indexes: about two seconds per test, minutes over the suite, for tables that
    are mostly empty. DELETE empties them in milliseconds. As for TRUNCATE, no trigger fires: with
    session_replication_role = replica (this transaction only; superusers only, else TRUNCATE stays) neither the
    append-only guards nor the foreign-key checks run, so the order of the tables does not matter either."""
    if connection.vendor != "postgresql":
        yield
        return
    DatabaseOperations = type(connection.ops)
    original = DatabaseOperations.sql_flush
    superuser = []  # asked at the first flush, once the test database exists

    def sql_flush(self, style, tables, *, reset_sequences=False, allow_cascade=False):
        if not superuser:
            with self.connection.cursor() as cursor:
                cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
                superuser.append(cursor.fetchone()[0])
        if reset_sequences or not tables or not superuser[0]:  # restarting the sequences is TRUNCATE's job
            return original(self, style, tables, reset_sequences=reset_sequences, allow_cascade=allow_cascade)
        # One round trip for all of them (a statement without parameters may hold several).
        deletes = "; ".join(f"DELETE FROM {self.quote_name(table)}" for table in tables)
        return [f"SET LOCAL session_replication_role = replica; {deletes}"]

    DatabaseOperations.sql_flush = sql_flush
    yield
    DatabaseOperations.sql_flush = original


@pytest.fixture(scope="session", autouse=True)
def _fast_password_hasher():
    """The default hasher spends about a quarter of a second per password on purpose, and pytest-django's
    `admin_user` (behind every `admin_client`) hashes one per test: hundreds of seconds over the suite. Tests check
    who may log in and what they see, not the hasher's cost, so they hash with MD5 (never a production setting)."""
    with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
        yield


@pytest.fixture(autouse=True)
def _eager_join_flag_restored():
    """Eager `delay()` (tasks queued on commit run in process without a broker) sets Celery's process-wide "a join
    would block" flag for the duration of the call and puts back what it found. Two threads doing it at once (the
    concurrency tests) can leave it set for good, and every later `EagerResult.get()` in the process would refuse to
    run. Put it back after each test."""
    yield
    _set_task_join_will_block(False)


@pytest.fixture(autouse=True)
def _plain_http(settings):
    """Production defaults redirect HTTP to HTTPS; the test client speaks plain HTTP."""
    settings.SECURE_SSL_REDIRECT = False


@pytest.fixture(autouse=True)
def _dashboard_uncached(settings):
    """The dashboard keeps its figures in the cache (shared between tests, Redis in CI): each test computes its own.
    tests/admin/test_dashboard_cache.py turns the cache on."""
    settings.LOYALTY_DASHBOARD_CACHE_SECONDS = 0


@pytest.fixture(autouse=True)
def _static_without_manifest(settings):
    """With DEBUG=0 static files need `collectstatic`'s manifest; tests render pages without running it
    (tests/test_deploy.py runs collectstatic for real)."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture
def member_factory(db):
    return MemberFactory


@pytest.fixture
def order_factory(db):
    return OrderFactory


@pytest.fixture
def member(member_factory):
    return member_factory()


def _api_key(scopes):
    api_key, key = ApiKey.objects.create_key(name="test storefront", scopes=list(scopes))
    return key


@pytest.fixture
def api_key(db):
    """A key holding every scope."""
    return _api_key(ApiScope.values)


@pytest.fixture
def api_client(api_key):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {api_key}")
    return client


@pytest.fixture
def api_client_with_scopes(db):
    def make(*scopes):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {_api_key(scopes)}")
        return client

    return make
