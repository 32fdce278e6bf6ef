"""API plumbing shared by every app: API-key authentication, scope permission, and the one mapping of errors
to responses. Every error body has the same shape: {"code": stable machine code, "detail": text, "errors": {...}}
where `errors` (field -> messages) is present for input errors only."""
import logging
import re
import threading
import time
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from decimal import Decimal

import redis
from django.conf import settings
from django.core.cache import cache
from django.http import Http404
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions, serializers, status
from rest_framework.authentication import BaseAuthentication
from rest_framework.pagination import CursorPagination
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.throttling import BaseThrottle

from members.errors import Conflict, DomainError, InvalidInput, NotFound
from members.models import ApiKey

logger = logging.getLogger(__name__)

KEYWORD = "Api-Key"
# last_used_at is refreshed at most this often, so a busy key costs no write per request.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class ApiKeyAuthentication(BaseAuthentication):
    """`Authorization: Api-Key <prefix>.<secret>`. A missing header is 401 with a WWW-Authenticate challenge;
    an unknown, revoked or expired key is 401 too."""

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        keyword, _sep, key = header.partition(" ")
        if keyword != KEYWORD:
            return None
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
    """A view names the scope it needs in `required_scope`; the key must hold it."""

    message = _("This API key lacks the scope this endpoint needs.")

    def has_permission(self, request, view):
        api_key = request.auth
        if not isinstance(api_key, ApiKey):
            raise exceptions.NotAuthenticated()
        required = getattr(view, "required_scope", None)
        return required is None or api_key.has_scope(required)


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


DOMAIN_STATUS = (
    (InvalidInput, status.HTTP_400_BAD_REQUEST),
    (NotFound, status.HTTP_404_NOT_FOUND),
    (Conflict, status.HTTP_409_CONFLICT),
)

DRF_CODES = {
    exceptions.ValidationError: "invalid",
    exceptions.ParseError: "malformed_request",
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.AuthenticationFailed: "authentication_failed",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "throttled",
}


def exception_handler(exc, context):
    # Imported here: rest_framework.views imports this module's authentication class while it loads.
    from rest_framework.views import exception_handler as drf_exception_handler

    if isinstance(exc, DomainError):
        http_status = getattr(exc, "http_status", None) or next(
            (code for family, code in DOMAIN_STATUS if isinstance(exc, family)), 400
        )
        body = {"code": exc.code, "detail": str(exc.detail)}
        if exc.field:
            body["errors"] = {exc.field: [str(exc.detail)]}
        retry_after = getattr(exc, "retry_after", None)  # e.g. idempotency_in_progress: when the key's lease ends
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
        return Response(body, status=http_status, headers=headers)

    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # a real bug: let Django log it and answer 500

    code = next((code for cls, code in DRF_CODES.items() if isinstance(exc, cls)), "error")
    if isinstance(exc, exceptions.ValidationError):
        errors = response.data if isinstance(response.data, dict) else {"non_field_errors": response.data}
        response.data = {"code": code, "detail": str(_("The request has invalid fields.")), "errors": errors}
    else:
        response.data = {"code": code, "detail": str(exc.detail)}
    return response


class ApiCursorPagination(CursorPagination):
    """Cursor pagination of the API's lists (ledgers, coupons): an unreadable `cursor` is a 400 field error on
    `cursor`, like any other bad input, not DRF's 404. `page_size` above the maximum is lowered to it."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200

    def decode_cursor(self, request):
        try:
            cursor = super().decode_cursor(request)
        except exceptions.NotFound:
            cursor = False
        # Our lists are ordered by id: a position that is no integer would fail in the query (a 500).
        if cursor is False or (cursor is not None and cursor.position is not None and not _is_int(cursor.position)):
            raise serializers.ValidationError({self.cursor_query_param: [str(_("Invalid cursor."))]})
        return cursor

    def get_page_size(self, request):
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        if not re.fullmatch(r"[0-9]+", raw) or int(raw) < 1:
            raise serializers.ValidationError({self.page_size_query_param: [str(_("Must be a positive integer."))]})
        return min(int(raw), self.max_page_size)

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"] = {"type": "integer", "minimum": 1}
                parameter["description"] = f"Results per page, default {self.page_size}; above {self.max_page_size}: " \
                    f"{self.max_page_size}."
            elif parameter["name"] == self.cursor_query_param:
                parameter["description"] = "The `next` or `previous` link's cursor; another value is 400."
        return parameters


def _is_int(value: str) -> bool:
    return re.fullmatch(r"-?[0-9]{1,19}", value) is not None


class DecimalStringField(serializers.DecimalField):
    """A money amount in a JSON body or query: a string of digits with at most `decimal_places` decimals ("12.50"),
    no sign, exponent, spaces or leading zeros, as the schema's `pattern` states (DRF's DecimalField also takes
    numbers and "1e3"). With `min_value` 0.01 the pattern also excludes zero."""

    default_error_messages = {"format": _('Send the amount as a decimal string such as "12.50".')}

    def __init__(self, *, max_digits, decimal_places, positive=False, **kwargs):
        integer_digits = max_digits - decimal_places
        fraction = f"(?:\\.[0-9]{{1,{decimal_places}}})?"
        if positive:
            small = "|".join(
                f"0\\.{'0' * n}[1-9]" + (f"[0-9]{{0,{decimal_places - n - 1}}}" if n < decimal_places - 1 else "")
                for n in range(decimal_places)
            )
            self.pattern = f"^(?:[1-9][0-9]{{0,{integer_digits - 1}}}{fraction}|{small})$"
            kwargs.setdefault("min_value", Decimal("0.1") ** decimal_places)
        else:
            self.pattern = f"^(?:0|[1-9][0-9]{{0,{integer_digits - 1}}}){fraction}$"
            kwargs.setdefault("min_value", Decimal(0))
        self.regex = re.compile(self.pattern.replace("$", "\\Z"))
        super().__init__(max_digits=max_digits, decimal_places=decimal_places, **kwargs)

    def to_internal_value(self, data):
        if not isinstance(data, str) or not self.regex.match(data):
            self.fail("format")
        return super().to_internal_value(data)


class ApiDateTimeField(serializers.DateTimeField):
    """An ISO 8601 moment from 1970 to 2999. Earlier ones would be rendered back in local mean time offsets
    ("+08:05:43", no valid RFC 3339), and far-future ones can overflow when converted between time zones."""

    EARLIEST = datetime(1970, 1, 1, tzinfo=dt_timezone.utc)
    LATEST = datetime(3000, 1, 1, tzinfo=dt_timezone.utc)
    default_error_messages = {"range": _("Must be from 1970 to 2999.")}

    def to_internal_value(self, value):
        try:
            moment = super().to_internal_value(value)
        except (OverflowError, ValueError):
            self.fail("invalid", format="ISO 8601")
        if not moment_in_range(moment):
            self.fail("range")
        return moment


def moment_in_range(moment: datetime) -> bool:
    """Whether an aware datetime is one the API takes (1970 to 2999; see ApiDateTimeField)."""
    try:
        return ApiDateTimeField.EARLIEST <= moment < ApiDateTimeField.LATEST
    except OverflowError:
        return False


# JSON types each input field takes: DRF would also coerce "5" into 5, 1 into True and 5 into "5"; the API takes
# exactly the types its schema states.
_JSON_TYPES = (
    (serializers.BooleanField, (bool,), _("Must be true or false.")),
    (serializers.IntegerField, (int,), _("Must be an integer.")),
    (serializers.DecimalField, (str,), _('Must be a decimal string such as "12.50".')),
    (serializers.MultipleChoiceField, (list,), _("Must be a list.")),
    (serializers.ChoiceField, (str,), _("Must be a string.")),
    (serializers.CharField, (str,), _("Must be a string.")),
    (serializers.DateField, (str,), _("Must be a string.")),
    (serializers.DateTimeField, (str,), _("Must be a string.")),
)


def validate_json_types(serializer_class, data) -> None:
    """Refuse a JSON body whose fields have another JSON type than the schema states (400 with field errors)."""
    if not isinstance(data, dict):
        return  # DRF answers "expected a dictionary" itself
    fields = serializer_class().fields
    errors = {}
    for name, value in data.items():
        field = fields.get(name)
        if field is None or field.read_only or (value is None and field.allow_null):
            continue
        for family, types, message in _JSON_TYPES:
            if isinstance(field, family):
                if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
                    errors[name] = [str(message)]
                break
    if errors:
        raise serializers.ValidationError(errors)
