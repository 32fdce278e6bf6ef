"""The product's URLs plus the bench's bare DRF endpoint (bench.api's baseline)."""
from django.urls import include, path
from rest_framework.response import Response
from rest_framework.views import APIView


class BareView(APIView):
    """A tiny JSON through DRF (negotiation, renderer, the whole middleware stack) with no authentication, no
    permission, no throttle and no database: the ceiling the API's endpoints are compared with."""

    authentication_classes = []
    permission_classes = []
    throttle_classes = []

    def get(self, request):
        return Response({"ok": True})


urlpatterns = [
    path("bench/bare/", BareView.as_view(), name="bench-bare"),
    path("", include("config.urls")),
]
