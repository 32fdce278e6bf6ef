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


def _api_operations(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    for path, operations in schema["paths"].items():
        if path.startswith("/api/v1/"):
            for method, operation in operations.items():
                yield f"{method.upper()} {path}", method, path, operation, schema


def _codes(response):
    return response["content"]["application/json"]["schema"]["allOf"][1]["properties"]["code"]["enum"]


def test_every_operation_documents_401_403_and_429_with_the_error_body_and_their_codes(client):
    for label, _method, _path, operation, _schema in _api_operations(client):
        responses = operation["responses"]
        assert _codes(responses["401"]) == ["authentication_failed", "not_authenticated"], label
        assert "WWW-Authenticate" in responses["401"]["headers"], label
        assert _codes(responses["403"]) == ["permission_denied"], label
        assert _codes(responses["429"]) == ["throttled"], label
        assert responses["429"]["headers"]["Retry-After"]["schema"]["type"] == "integer", label


def test_every_error_response_carries_the_error_body_with_its_codes_in_the_description(client):
    operations = list(_api_operations(client))
    for label, _method, _path, operation, _schema in operations:
        for status, response in operation["responses"].items():
            if int(status) < 400:
                continue
            body = response["content"]["application/json"]["schema"]
            assert body["allOf"][0] == {"$ref": "#/components/schemas/Error"}, (label, status)
            codes = _codes(response)
            assert codes and all(code in response["description"] for code in codes), (label, status)
    schema = operations[0][4]  # the whole schema, the same for every operation
    error = schema["components"]["schemas"]["Error"]
    assert set(error["properties"]) == {"code", "detail", "errors"}
    assert error["required"] == ["code", "detail"]


def test_every_post_documents_the_idempotency_errors_and_bad_input(client):
    for label, method, _path, operation, _schema in _api_operations(client):
        if method != "post":
            continue
        responses = operation["responses"]
        assert "invalid_idempotency_key" in _codes(responses["400"]), label
        assert "idempotency_in_progress" in _codes(responses["409"]), label
        assert _codes(responses["422"]) == ["idempotency_key_reused"], label
        assert "415" in responses, label


def test_every_operation_with_a_member_or_order_in_its_path_documents_404(client):
    for label, _method, path, operation, _schema in _api_operations(client):
        if "{external_id}" in path:
            assert "member_not_found" in _codes(operation["responses"]["404"]), label
        if "{order_id}" in path:
            assert "order_not_found" in _codes(operation["responses"]["404"]), label


def test_every_operation_taking_input_documents_400_with_field_errors(client):
    for label, _method, _path, operation, _schema in _api_operations(client):
        takes_query = any(p["in"] == "query" for p in operation.get("parameters", []))
        if takes_query or "requestBody" in operation:
            assert "invalid" in _codes(operation["responses"]["400"]), label


def test_conflicts_list_their_domain_codes(client):
    operations = {label: operation for label, _m, _p, operation, _s in _api_operations(client)}

    def conflicts(label):
        return set(_codes(operations[label]["responses"]["409"]))

    assert {"insufficient_points", "out_of_stock"} <= conflicts("POST /api/v1/redemptions/")
    assert "already_checked_in" in conflicts("POST /api/v1/members/{external_id}/check-ins/")
    assert "order_conflict" in conflicts("POST /api/v1/orders/")


def test_request_text_fields_state_that_nul_is_refused_and_decimals_their_exact_format(client):
    schemas = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()["components"]["schemas"]

    # (order_id now states the identifier character set: tests/api/test_identifiers_api.py)
    assert schemas["OrderInput"]["properties"]["customer_id"]["pattern"] == r"^[^\u0000]*\S[^\u0000]*$"
    assert schemas["MemberRegistration"]["properties"]["name"]["pattern"] == r"^[^\u0000]*$"
    assert schemas["OrderInput"]["properties"]["amount"]["pattern"] == r"^(?:0|[1-9][0-9]{0,9})(?:\.[0-9]{1,2})?$"


def test_every_operation_has_exactly_one_tag_from_the_declared_areas(client):
    operations = list(_api_operations(client))
    declared = operations[0][4]["tags"]
    names = [tag["name"] for tag in declared]

    assert all(tag["description"] for tag in declared)
    assert {"members", "orders", "points", "tiers", "engagement", "privacy"} <= set(names)
    for label, _method, _path, operation, _schema in operations:
        assert len(operation["tags"]) == 1 and operation["tags"][0] in names, label
    assert {operation["tags"][0] for *_, operation, _schema in operations} == set(names), "no tag is left unused"


def test_the_schema_description_is_a_quick_start_covering_what_every_client_needs(client):
    description = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()["info"]["description"]

    for topic in ("Authentication", "Idempotency", "Errors", "Rate limits", "Pagination"):
        assert f"**{topic}" in description, topic
    assert "Api-Key <key>" in description and "`code`" in description
