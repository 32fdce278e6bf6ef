"""The one beat: django-celery-beat's DatabaseScheduler, sending only while it holds a Redis lock.

Two beats on one schedule send every task twice. JobRun already turns the second firing of a job into a no-op, but
the schedule itself should not double, so the scheduler (CELERY_BEAT_SCHEDULER) takes a lock in Redis
(CELERY_BEAT_LOCK_URL: default REDIS_URL, else the broker) with a time to live (CELERY_BEAT_LOCK_TTL, 60 s) and
refreshes it on every tick (every few seconds). A beat that does not hold the lock sends nothing: it checks again
every few seconds, and takes over, reloading the schedule and its last-run times from the database, when the lock
expires because its holder stopped. So a second beat started by mistake is a harmless standby.

The lock is `SET key token NX PX ttl`; refresh and release compare the token first (a Lua script), so a beat can
never extend or delete a lock another beat holds. If Redis cannot be reached, the beat sends nothing until it can.
"""
import logging
import os
import socket
from uuid import uuid4

import redis
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django_celery_beat.schedulers import DatabaseScheduler

logger = logging.getLogger(__name__)

LOCK_KEY = "loyalty:celery-beat:lock"

_REFRESH = """
if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("pexpire", KEYS[1], ARGV[2]) else return 0 end
"""
_RELEASE = """
if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("del", KEYS[1]) else return 0 end
"""


class BeatLock:
    """A lock with a time to live, held by one beat process (its token names host and pid, for people)."""

    def __init__(self, url: str, ttl: int, key: str = LOCK_KEY):
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise ImproperlyConfigured(
                "The beat lock needs Redis: set CELERY_BEAT_LOCK_URL (or REDIS_URL), e.g. redis://127.0.0.1:6379/0"
            )
        self.client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self.key = key
        self.ttl_ms = int(ttl * 1000)
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid4().hex[:8]}"

    def acquire(self) -> bool:
        """Take the lock, or keep it (refreshing its time to live) if this beat holds it already."""
        if self.client.eval(_REFRESH, 1, self.key, self.token, self.ttl_ms):
            return True
        return bool(self.client.set(self.key, self.token, nx=True, px=self.ttl_ms))

    def release(self) -> None:
        self.client.eval(_RELEASE, 1, self.key, self.token)

    def holder(self) -> str | None:
        value = self.client.get(self.key)
        return value.decode() if value else None


class SingleBeatScheduler(DatabaseScheduler):
    """DatabaseScheduler that ticks only while holding the beat lock (module docstring)."""

    def __init__(self, *args, **kwargs):
        self.lock = BeatLock(settings.CELERY_BEAT_LOCK_URL, settings.CELERY_BEAT_LOCK_TTL)
        self.holding = False
        super().__init__(*args, **kwargs)

    @property
    def standby_interval(self) -> float:
        """How long a beat without the lock waits before trying again, and the longest a holder sleeps between
        refreshes: well inside the lock's time to live."""
        return max(1.0, min(5.0, settings.CELERY_BEAT_LOCK_TTL / 4))

    def tick(self, *args, **kwargs):
        try:
            held = self.lock.acquire()
        except redis.RedisError as exc:
            logger.warning("Beat lock: Redis unreachable (%s); sending nothing until it answers.", exc)
            held = False
        if held and not self.holding:
            logger.info("Beat lock taken (%s): this beat sends the schedule.", self.lock.token)
            # Another beat may have sent tasks while this one waited: read the schedule and last runs afresh.
            self._initial_read = True
            self._heap = None
        elif self.holding and not held:
            logger.warning("Beat lock lost: another beat holds it (%s); standing by.", self._holder())
        elif not held and not getattr(self, "_standby_logged", False):
            logger.warning("Beat lock held by %s: this beat stands by and sends nothing.", self._holder())
            self._standby_logged = True
        self.holding = held
        if not held:
            return self.standby_interval
        return min(super().tick(*args, **kwargs), self.standby_interval)

    def _holder(self) -> str:
        try:
            return self.lock.holder() or "nobody"
        except redis.RedisError:
            return "unknown"

    def close(self):
        super().close()
        if self.holding:
            try:
                self.lock.release()  # a clean stop hands over at once instead of after the time to live
            except redis.RedisError:
                pass
            self.holding = False
