"""The OpenAPI schema class of the API (settings REST_FRAMEWORK["DEFAULT_SCHEMA_CLASS"]). Apart from config.api,
which rest_framework.views imports while it loads (drf-spectacular's AutoSchema imports DRF's views in turn)."""
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiParameter


class ApiAutoSchema(AutoSchema):
    """drf-spectacular's AutoSchema, plus the optional `Idempotency-Key` header on every POST operation (see
    config.idempotency); a view that declares the header itself (e.g. as required) keeps its own declaration."""

    def get_override_parameters(self):
        parameters = super().get_override_parameters()
        if self.method == "POST" and not any(
            isinstance(p, OpenApiParameter) and p.name == "Idempotency-Key" for p in parameters
        ):
            parameters = [
                *parameters,
                OpenApiParameter(
                    "Idempotency-Key",
                    str,
                    OpenApiParameter.HEADER,
                    required=False,
                    description="Up to 255 characters, unique per request, kept 24 hours. A repeat answers the "
                    "stored response with `Idempotent-Replayed: true`; the same key with another body is 422 "
                    "idempotency_key_reused; while the first is still running, 409 idempotency_in_progress.",
                ),
            ]
        return parameters
