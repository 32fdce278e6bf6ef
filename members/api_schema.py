"""The OpenAPI schema class of the API (settings REST_FRAMEWORK["DEFAULT_SCHEMA_CLASS"]) and the description of its
error responses. Apart from members.api_auth, which rest_framework.views imports while it loads (drf-spectacular's
AutoSchema imports DRF's views in turn).

The schema states exactly what the API does, so a client (and the contract test, tests/api/test_contract.py) can rely
on it:
- every operation lists each error status it can answer, with the error body (`code`, `detail`, `errors`) and the
  enum of the `code`s possible there: the ones its view declares with `error_responses(...)` plus the ones every
  operation shares (401 not_authenticated/authentication_failed, 403 permission_denied, 429 throttled with
  Retry-After, 500 server_error with its error_id, 404 not_found with a path parameter; on a POST 400
  invalid_idempotency_key and nesting_too_deep, 409 idempotency_in_progress with Retry-After, 413 request_too_large
  with the cap, 422 idempotency_key_reused: members.api_guard enforces the cap and the depth before any view);
- every text field of a request states what DRF's CharField checks: never a NUL character (PostgreSQL cannot store
  it, DRF refuses it) and, unless blank is allowed, something besides whitespace (DRF trims it first)."""
from django.conf import settings
from django.core.validators import RegexValidator
from django.utils.translation import gettext_lazy as _
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema_serializer
from rest_framework import serializers

from members.api_fields import DecimalStringField
from members.api_guard import body_cap
from members.idempotency import KEY_PATTERN, MAX_KEY_LENGTH

API_PREFIX = "/api/v1/"


@extend_schema_serializer(component_name="Error")
class ErrorSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Stable machine-readable error code.")
    detail = serializers.CharField(help_text="Human-readable, in the request's language.")
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="Field name (or header name, or non_field_errors) -> messages; present for input errors only.",
    )


ERROR_DESCRIPTIONS = {
    400: _("Invalid input: `errors` names each field at fault"),
    401: _("Missing, unknown, revoked or expired API key"),
    403: _("The API key lacks the scope this operation needs"),
    404: _("Not found"),
    409: _("Conflict with the current state"),
    413: _("The body is larger than %(limit)s bytes"),
    415: _("The body is not JSON"),
    422: _("The Idempotency-Key was already used with another request"),
    429: _("Too many requests for this API key: retry after `Retry-After` seconds"),
    500: _("Unexpected server error: the error_id is logged with the details"),
}
# What a code adds to its status's description, with the limit it names.
CODE_DESCRIPTIONS = {
    "nesting_too_deep": _("nesting_too_deep: arrays and objects nested more than %(limit)s levels deep"),
    "not_found": _("not_found: no such path (a path parameter holding a slash, a missing trailing slash)"),
}

# Codes every operation (or every POST) can answer, whatever its view.
COMMON_CODES = {
    401: ["not_authenticated", "authentication_failed"],
    403: ["permission_denied"],
    429: ["throttled"],
    500: ["server_error"],
}
POST_CODES = {
    400: ["invalid", "malformed_request", "invalid_idempotency_key", "nesting_too_deep"],
    409: ["idempotency_in_progress"],
    413: ["request_too_large"],
    415: ["unsupported_media_type"],
    422: ["idempotency_key_reused"],
}
# Where a path parameter is, another path is a value away ("a/b"): members.api_guard answers 404 not_found.
PATH_PARAMETER_CODES = {404: ["not_found"]}


class ErrorResponse(OpenApiResponse):
    """An error response of an operation with the `code`s it can carry."""

    def __init__(self, status: int, codes=()):
        super().__init__(ErrorSerializer, description=ERROR_DESCRIPTIONS[status])
        self.status = status
        self.codes = list(codes)


def error_responses(*statuses: int, codes: dict[int, list[str]] | None = None) -> dict:
    """The error responses of a view's operation for extend_schema(responses=...): `statuses` it answers besides the
    common ones, `codes` the domain error codes per status (400 `invalid` for field errors is implied)."""
    codes = codes or {}
    unknown = set(codes) - set(statuses)
    assert not unknown, f"codes for undeclared statuses {unknown}"
    default = {400: ["invalid"], 404: ["member_not_found"]}
    return {status: ErrorResponse(status, codes.get(status, default.get(status, []))) for status in statuses}


# DRF refuses NUL in text and trims whitespace before its blank check. (\S is "not whitespace" in both Python and
# ECMA regexes; they disagree only on a few control characters, \x1c-\x1f.)
NO_NUL_PATTERN = "^[^\\u0000]*$"
NOT_BLANK_PATTERN = "^[^\\u0000]*\\S[^\\u0000]*$"


class ApiAutoSchema(AutoSchema):
    """drf-spectacular's AutoSchema, plus: the optional `Idempotency-Key` header on every POST operation (see
    members.idempotency; a view that declares the header itself, e.g. as required, keeps its own declaration); the
    error responses of every operation with their codes and headers; NUL and blank rules of request text fields."""

    def _is_api(self):
        return self.path.startswith(API_PREFIX)

    def get_override_parameters(self):
        parameters = super().get_override_parameters()
        if not self._is_api():
            return parameters
        if self.method == "POST" and not any(
            isinstance(p, OpenApiParameter) and p.name == "Idempotency-Key" for p in parameters
        ):
            parameters = [
                *parameters,
                OpenApiParameter(
                    "Idempotency-Key",
                    {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH, "pattern": KEY_PATTERN},
                    OpenApiParameter.HEADER,
                    required=False,
                    description="1 to 255 visible ASCII characters (no spaces; a UUID will do), unique per request, "
                    "kept 24 hours. A repeat answers the "
                    "stored response with `Idempotent-Replayed: true`; the same key with another body is 422 "
                    "idempotency_key_reused; while the first is still running, 409 idempotency_in_progress with "
                    "`Retry-After`. A first request that died holding the key (no answer within the lease, 60 s) "
                    "is taken over by the next one with the key.",
                ),
            ]
        if self.method == "POST":
            parameters = [
                *parameters,
                OpenApiParameter(
                    "Retry-After",
                    int,
                    OpenApiParameter.HEADER,
                    response=[409],
                    required=False,
                    description="With idempotency_in_progress only: seconds until the first request's lease on the "
                    "Idempotency-Key ends (at least 1). Retry then with the same key: it answers the stored response, "
                    "or runs the request if the first one died.",
                ),
            ]
        return [
            *parameters,
            OpenApiParameter(
                "Retry-After",
                int,
                OpenApiParameter.HEADER,
                response=[429],
                required=True,
                description="Seconds until the rate-limit window ends.",
            ),
            OpenApiParameter(
                "WWW-Authenticate",
                str,
                OpenApiParameter.HEADER,
                response=[401],
                required=True,
                description="`Api-Key`.",
            ),
        ]

    def _get_response_bodies(self, direction="response"):
        # extend_schema(responses=...) overrides get_response_serializers() in a subclass: merge the errors here.
        responses = self.get_response_serializers()
        if not self._is_api() or not isinstance(responses, dict):
            return super()._get_response_bodies(direction)
        return {
            str(status): self._get_response_for_code(response, str(status), direction=direction)
            for status, response in self._with_error_responses(responses).items()
        }

    def _with_error_responses(self, responses: dict) -> dict:
        statuses: dict[int, set[str]] = {status: set(codes) for status, codes in COMMON_CODES.items()}
        if self.method == "POST":
            for status, codes in POST_CODES.items():
                statuses.setdefault(status, set()).update(codes)
        merged = {}
        for status, response in responses.items():
            if isinstance(response, ErrorResponse):
                statuses.setdefault(status, set()).update(response.codes)
            else:
                merged[status] = response
        if "{" in self.path:
            for status, codes in PATH_PARAMETER_CODES.items():
                statuses.setdefault(status, set()).update(codes)
        if 400 in statuses:
            statuses[400].add("invalid")
        error_ref = self.resolve_serializer(ErrorSerializer, "response").ref
        for status in sorted(statuses):
            codes = sorted(statuses[status])
            body = {"type": "object", "properties": {"code": {"type": "string", "enum": codes}}}
            if status == 500:
                body["properties"]["error_id"] = {"type": "string", "description": "Quote it when reporting the error."}
                body["required"] = ["error_id"]
            merged[status] = OpenApiResponse({"allOf": [error_ref, body]}, description=_error_description(status, codes))
        return merged

    def _map_serializer_field(self, field, direction, bypass_extensions=False):
        schema = super()._map_serializer_field(field, direction, bypass_extensions)
        if direction != "request" or field.read_only:
            return schema
        if isinstance(field, DecimalStringField):
            schema["pattern"] = field.pattern  # what it takes exactly (DRF's pattern would allow "", "-" and ".")
        elif (
            isinstance(field, serializers.CharField)
            and schema.get("type") == "string"
            and "pattern" not in schema
            and "enum" not in schema
            and not any(isinstance(v, RegexValidator) for v in field.validators)  # spectacular adds that pattern
        ):
            blank_refused = not field.allow_blank and field.trim_whitespace
            schema["pattern"] = NOT_BLANK_PATTERN if blank_refused else NO_NUL_PATTERN
            if not field.allow_blank:
                schema.setdefault("minLength", 1)
        return schema


def _error_description(status: int, codes: list[str]) -> str:
    """The status's description with the cap enforced now, what some of its codes mean, and the list of codes."""
    parts = [str(ERROR_DESCRIPTIONS[status]) % {"limit": body_cap()}]
    depth = {"limit": settings.LOYALTY_API_MAX_JSON_DEPTH}
    parts += [str(CODE_DESCRIPTIONS[code]) % depth for code in codes if code in CODE_DESCRIPTIONS]
    return f"{'; '.join(parts)}. Codes: {', '.join(codes)}."
