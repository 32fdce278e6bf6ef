"""API-key authentication, the scope permission and the per-key rate limit of the storefront API (settings
REST_FRAMEWORK). Keys are members.ApiKey; `manage.py create_api_key` makes one."""
import logging
import threading
import time
from datetime import timedelta

import redis
from django.conf import settings
from django.core.cache import cache
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.throttling import BaseThrottle

from members.models import ApiKey

logger = logging.getLogger(__name__)

KEYWORD = "Api-Key"
# last_used_at is refreshed at most this often, so a busy key costs no write per request.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class ApiKeyAuthentication(BaseAuthentication):
    """`Authorization: Api-Key <prefix>.<secret>`. A missing header is 401 not_authenticated with a WWW-Authenticate
    challenge; another scheme (`Bearer x`, `Token x`, a bare key...) is 401 authentication_failed saying how to send
    the key; an unknown, revoked or expired key is 401 authentication_failed too."""

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "").strip()
        if not header:
            return None
        keyword, _sep, key = header.partition(" ")
        if keyword != KEYWORD:
            raise exceptions.AuthenticationFailed(_('Send the key as "Authorization: Api-Key <key>".'))
        key = key.strip()
        if not key:
            raise exceptions.AuthenticationFailed(_("The API key is empty."))
        try:
            api_key = ApiKey.objects.get_from_key(key)  # looks up by prefix, verifies the hash, skips revoked keys
        except ApiKey.DoesNotExist:
            api_key = None
        if api_key is None or api_key.has_expired:
            raise exceptions.AuthenticationFailed(_("Unknown, revoked or expired API key."))
        now = timezone.now()
        if api_key.last_used_at is None or now - api_key.last_used_at > LAST_USED_RESOLUTION:
            ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        return (None, api_key)

    def authenticate_header(self, request):
        return KEYWORD


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    """Describes the Api-Key header in the OpenAPI schema."""

    target_class = ApiKeyAuthentication
    name = "ApiKeyAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Api-Key <key>`; create a key with `manage.py create_api_key`.",
        }


class HasApiKeyScope(BasePermission):
    """A view names the scope it needs in `required_scope`; the key must hold it, else 403 permission_denied whose
    detail names the scope (DRF reads `message` of the permission instance, one per request)."""

    def has_permission(self, request, view):
        api_key = request.auth
        if not isinstance(api_key, ApiKey):
            raise exceptions.NotAuthenticated()
        required = getattr(view, "required_scope", None)
        if required is None or api_key.has_scope(required):
            return True
        self.message = _('This API key lacks the scope "%(scope)s" this endpoint needs.') % {"scope": str(required)}
        return False


class ApiKeyRateThrottle(BaseThrottle):
    """Per-API-key rate limit: at most `ApiKey.rate_limit_per_minute` requests (empty: the setting
    LOYALTY_API_RATE_LIMIT_PER_MINUTE; 0: unlimited) in each fixed one-minute window; beyond it 429 `throttled` with
    `Retry-After` (seconds until the window ends).

    The count is one atomic increment: with REDIS_URL set, INCR + EXPIRE in a MULTI/EXEC pipeline on a connection pool
    shared by the process, so under any concurrency exactly `limit` requests per window pass (DRF's SimpleRateThrottle
    reads, then writes the cache, and lets extra requests through). Without Redis, Django's cache `incr` (atomic within
    one process for LocMemCache). Redis unreachable: the request passes (logged), as an outage of the counter must not
    take the storefront down with it. A fixed window may let up to twice the limit through around a window's edge; that
    is the price of one key and one round trip per request."""

    WINDOW = 60  # seconds
    KEY_PREFIX = "loyalty:api-rate"

    def allow_request(self, request, view):
        api_key = request.auth
        if not isinstance(api_key, ApiKey):
            return True  # authentication answers first
        limit = api_key.rate_limit_per_minute
        if limit is None:
            limit = settings.LOYALTY_API_RATE_LIMIT_PER_MINUTE
        if not limit:
            return True
        now = time.time()
        window = int(now // self.WINDOW)
        self.retry_after = max(1, int(self.WINDOW - now % self.WINDOW + 0.999))
        count = rate_count_increment(f"{self.KEY_PREFIX}:{api_key.pk}:{window}", ttl=self.WINDOW + 5)
        return count <= limit

    def wait(self):
        return getattr(self, "retry_after", self.WINDOW)


_redis_clients: dict[str, redis.Redis] = {}
_redis_clients_lock = threading.Lock()


def redis_client(url: str) -> redis.Redis:
    """One client (one connection pool) per URL for the life of the process."""
    client = _redis_clients.get(url)
    if client is None:
        with _redis_clients_lock:
            client = _redis_clients.setdefault(url, redis.Redis.from_url(url, socket_timeout=2))
    return client


def rate_count_increment(key: str, *, ttl: int) -> int:
    """Add one to the counter `key` (created with a lifetime of `ttl` seconds) and return the new count, atomically."""
    if settings.REDIS_URL:
        try:
            pipe = redis_client(settings.REDIS_URL).pipeline(transaction=True)
            pipe.incr(key)
            pipe.expire(key, ttl)  # the window is in the key: re-arming the expiry is harmless
            count, _expiry_set = pipe.execute()
        except redis.RedisError:
            logger.warning("rate limit not enforced: Redis unreachable", exc_info=True)
            return 0
        return count
    cache.add(key, 0, timeout=ttl)
    try:
        return cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, timeout=ttl)
        return 1
