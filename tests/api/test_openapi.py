"""The OpenAPI schema and the docs UI are served without a key and without the internet."""
import re

import pytest
from django.core.management import call_command

pytestmark = pytest.mark.django_db


def test_the_schema_is_served_and_names_every_endpoint(client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/json")

    assert response.status_code == 200
    paths = response.json()["paths"]
    assert {"/api/v1/members/", "/api/v1/members/{external_id}/", "/api/v1/orders/"} <= set(paths)
    assert response.json()["components"]["securitySchemes"]["ApiKeyAuth"]["name"] == "Authorization"


def test_the_schema_generates_without_warnings():
    # --fail-on-warn turns any drf-spectacular warning (an unresolvable serializer, a name clash) into an error.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", "/dev/null")


def test_the_docs_ui_loads_its_assets_from_this_server_only(client):
    response = client.get("/api/docs/")

    assert response.status_code == 200
    html = response.content.decode()
    assert "drf_spectacular_sidecar/swagger-ui-dist" in html
    assert not re.search(r"""(src|href)=["']https?://""", html), "no asset may come from a CDN"
