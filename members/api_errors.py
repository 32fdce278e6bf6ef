"""The one mapping of errors to API responses (settings REST_FRAMEWORK["EXCEPTION_HANDLER"]). Every error body has the
same shape: {"code": stable machine code, "detail": text, "errors": {...}} where `errors` (field -> messages) is
present for input errors only. members.api_guard answers the errors no view made in the same shape."""
from django.http import Http404
from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from members.errors import Conflict, DomainError, InvalidInput, NotFound

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
