"""GET /api/v1/: the API's index, read from the URL patterns themselves so it never lists what does not exist."""
import re

from django.urls import reverse
from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

HTTP_METHODS = ("get", "post", "put", "patch", "delete")
_CONVERTER = re.compile(r"<(?:[^>:]+:)?([^>]+)>")  # "<str:external_id>" -> "{external_id}", as the schema writes it


@extend_schema_serializer(component_name="ApiIndex")
class ApiIndexOutput(serializers.Serializer):
    @extend_schema_serializer(component_name="ApiEndpoint")
    class Endpoint(serializers.Serializer):
        name = serializers.CharField(help_text="The route's name, stable across versions.")
        path = serializers.CharField(help_text="With {parameters} as in the schema.")
        methods = serializers.ListField(child=serializers.CharField())
        scope = serializers.CharField(allow_null=True, help_text="The API key scope it needs; null: any key.")

    version = serializers.CharField()
    schema = serializers.CharField(help_text="The OpenAPI schema (no key needed).")
    docs = serializers.CharField(help_text="The interactive documentation (no key needed).")
    endpoints = Endpoint(many=True)


@extend_schema(tags=["index"])  # the area (SPECTACULAR_SETTINGS["TAGS"])
class ApiIndexView(APIView):
    """Any valid API key may read it, whatever its scopes (so a storefront can also check its key with it); the
    schema and docs it points to are public. `patterns` (the version's URL patterns) is given by the URL conf."""

    patterns = ()
    schema_url_name = "schema"
    docs_url_name = "api-docs"

    @extend_schema(
        operation_id="api_index",
        summary="The API's endpoints, schema and docs",
        description="Any valid API key, whatever its scopes. The schema and the docs need no key.",
        responses={200: ApiIndexOutput},
    )
    def get(self, request):
        endpoints = [
            {
                "name": pattern.name,
                "path": request.path + _CONVERTER.sub(r"{\1}", str(pattern.pattern)),
                "methods": [m.upper() for m in HTTP_METHODS if hasattr(pattern.callback.view_class, m)],
                "scope": getattr(pattern.callback.view_class, "required_scope", None),
            }
            for pattern in self.patterns
        ]
        index = {
            "version": request.resolver_match.namespace,
            "schema": reverse(self.schema_url_name),
            "docs": reverse(self.docs_url_name),
            "endpoints": endpoints,
        }
        return Response(ApiIndexOutput(index).data)
