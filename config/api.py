"""API plumbing shared by every app: API-key authentication, scope permission, and the one mapping of errors
to responses. Every error body has the same shape: {"code": stable machine code, "detail": text, "errors": {...}}
where `errors` (field -> messages) is present for input errors only."""
from datetime import timedelta

from django.http import Http404
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions, status
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.response import Response

from members.errors import Conflict, DomainError, InvalidInput, NotFound
from members.models import ApiKey

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
        http_status = next((code for family, code in DOMAIN_STATUS if isinstance(exc, family)), 400)
        body = {"code": exc.code, "detail": str(exc.detail)}
        if exc.field:
            body["errors"] = {exc.field: [str(exc.detail)]}
        return Response(body, status=http_status)

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
