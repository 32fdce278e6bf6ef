"""Every 4xx and 5xx under /api/ is the JSON error body, whoever answers it; bodies over the cap and JSON nested too
deep are refused before anything parses them (members.api_guard)."""
import io
import logging

import pytest
from django.middleware.common import CommonMiddleware
from django.test import Client
from rest_framework.test import APIClient

from members.idempotency import request_fingerprint
from members.models import ApiIdempotencyRecord, Member
from tiers.api import TierListView

pytestmark = pytest.mark.django_db

MIB = 1024 * 1024


def _deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def _member_body(size: int) -> bytes:
    """A member registration of exactly `size` bytes."""
    head, tail = b'{"external_id": "m-big", "name": "', b'"}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


def _assert_error(response, status, code):
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    assert response.json()["code"] == code
    assert response.json()["detail"]


# --- Paths and methods ----------------------------------------------------------------------------------------------


def test_an_unknown_path_under_api_is_a_json_404(client):
    _assert_error(client.get("/api/v1/no-such-thing/"), 404, "not_found")


def test_an_unknown_path_under_api_is_a_json_404_also_with_debug_on(client, settings):
    settings.DEBUG = True

    _assert_error(client.get("/api/nowhere/"), 404, "not_found")


def test_the_bare_api_path_is_a_json_404(client):
    _assert_error(client.get("/api"), 404, "not_found")


def test_a_path_outside_api_keeps_djangos_html_404(client):
    response = client.get("/no-such-page/")

    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


def test_a_post_missing_its_trailing_slash_is_a_json_404_naming_the_right_path(api_client):
    response = api_client.post("/api/v1/members", {"external_id": "m-1"}, format="json")

    _assert_error(response, 404, "not_found")
    assert "/api/v1/members/" in response.json()["detail"]
    assert not Member.objects.exists()


def test_a_post_missing_its_trailing_slash_with_debug_on_is_a_json_404_not_a_runtime_error(api_client, settings):
    settings.DEBUG = True  # CommonMiddleware raises RuntimeError for a POST it cannot redirect

    response = api_client.post("/api/v1/orders", {"order_id": "o-1"}, format="json")

    _assert_error(response, 404, "not_found")
    assert "/api/v1/orders/" in response.json()["detail"]


def test_a_get_missing_its_trailing_slash_is_not_redirected(api_client):
    _assert_error(api_client.get("/api/v1/tiers"), 404, "not_found")


def test_a_wrong_method_is_a_json_405_with_allow(api_client):
    response = api_client.delete("/api/v1/")

    _assert_error(response, 405, "method_not_allowed")
    assert "GET" in response["Allow"]


# --- The index ------------------------------------------------------------------------------------------------------


def test_the_api_index_lists_the_endpoints_the_schema_and_the_docs(api_client):
    response = api_client.get("/api/v1/")

    assert response.status_code == 200
    index = response.json()
    assert (index["schema"], index["docs"]) == ("/api/schema/", "/api/docs/")
    endpoints = {(e["path"], tuple(e["methods"])) for e in index["endpoints"]}
    assert ("/api/v1/orders/", ("POST",)) in endpoints
    assert ("/api/v1/members/{external_id}/", ("GET",)) in endpoints


def test_the_api_index_needs_an_api_key(client):
    _assert_error(client.get("/api/v1/"), 401, "not_authenticated")


# --- Body size ------------------------------------------------------------------------------------------------------


def test_a_body_over_one_mebibyte_is_a_413_by_default(api_client):
    response = api_client.post("/api/v1/members/", _member_body(MIB + 1), content_type="application/json")

    _assert_error(response, 413, "request_too_large")
    assert not Member.objects.exists()


def test_a_body_at_the_cap_is_read(api_client, settings):
    settings.LOYALTY_API_MAX_BODY_BYTES = 200

    response = api_client.post("/api/v1/members/", _member_body(200), content_type="application/json")

    assert response.status_code == 400  # read and validated: the name is too long
    assert list(response.json()["errors"]) == ["name"]


def test_a_body_over_the_cap_with_an_idempotency_key_is_a_413_and_claims_nothing(api_client, settings):
    settings.LOYALTY_API_MAX_BODY_BYTES = 200

    response = api_client.post(
        "/api/v1/members/", _member_body(201), content_type="application/json", HTTP_IDEMPOTENCY_KEY="k-1"
    )

    _assert_error(response, 413, "request_too_large")
    assert not ApiIdempotencyRecord.objects.exists()


def test_a_body_over_djangos_data_upload_max_memory_size_is_a_json_413(api_client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 200  # lower than the API's cap: Django's cap wins

    response = api_client.post(
        "/api/v1/members/", _member_body(201), content_type="application/json", HTTP_IDEMPOTENCY_KEY="k-1"
    )

    _assert_error(response, 413, "request_too_large")


def _chunked(body: bytes) -> dict:
    """The WSGI environ of a chunked body: no Content-Length, the server ends the stream after the last chunk."""
    return {"CONTENT_LENGTH": "", "HTTP_TRANSFER_ENCODING": "chunked", "wsgi.input_terminated": True,
            "wsgi.input": io.BytesIO(body)}


def test_a_chunked_body_over_the_cap_is_a_413(api_client, settings):
    settings.LOYALTY_API_MAX_BODY_BYTES = 200
    body = _member_body(10_000)

    response = api_client.post("/api/v1/members/", body, content_type="application/json", **_chunked(body))

    _assert_error(response, 413, "request_too_large")


def test_a_chunked_body_under_the_cap_is_read_not_dropped(api_client):
    body = b'{"external_id": "m-chunked"}'

    response = api_client.post("/api/v1/members/", body, content_type="application/json", **_chunked(body))

    assert response.status_code == 201
    assert Member.objects.filter(external_id="m-chunked").exists()


def test_a_content_length_over_the_cap_is_refused_without_reading_the_body(api_client, settings):
    settings.LOYALTY_API_MAX_BODY_BYTES = 200
    body = b'{"external_id": "m-1"}'
    stream = io.BytesIO(body)

    response = api_client.post(
        "/api/v1/members/", body, content_type="application/json", CONTENT_LENGTH="5000", **{"wsgi.input": stream}
    )

    _assert_error(response, 413, "request_too_large")
    assert stream.tell() == 0


# --- Nesting --------------------------------------------------------------------------------------------------------


def test_json_nested_deeper_than_the_limit_is_a_400_nesting_too_deep(api_client, settings):
    settings.LOYALTY_API_MAX_JSON_DEPTH = 5
    body = b'{"external_id": "m-1", "name": [[[[[]]]]]}'  # depth 6

    response = api_client.post("/api/v1/members/", body, content_type="application/json")

    _assert_error(response, 400, "nesting_too_deep")


def test_json_nested_as_deep_as_the_limit_passes_the_guard(api_client, settings):
    settings.LOYALTY_API_MAX_JSON_DEPTH = 5
    body = b'{"external_id": "m-1", "name": [[[[]]]]}'  # depth 5

    response = api_client.post("/api/v1/members/", body, content_type="application/json")

    assert (response.status_code, list(response.json()["errors"])) == (400, ["name"])


def test_very_deep_json_is_a_400_not_a_server_error(api_client):
    response = api_client.post("/api/v1/members/", _deep(100_000), content_type="application/json")

    _assert_error(response, 400, "nesting_too_deep")


def test_very_deep_json_with_an_idempotency_key_is_a_400_not_a_server_error(api_client):
    response = api_client.post(
        "/api/v1/members/", _deep(100_000), content_type="application/json", HTTP_IDEMPOTENCY_KEY="k-1"
    )

    _assert_error(response, 400, "nesting_too_deep")
    assert not ApiIdempotencyRecord.objects.exists()


def test_very_deep_json_in_a_body_that_is_not_declared_json_is_refused_too(api_client):
    response = api_client.post(
        "/api/v1/members/", _deep(100_000), content_type="text/plain", HTTP_IDEMPOTENCY_KEY="k-1"
    )

    _assert_error(response, 400, "nesting_too_deep")


def test_the_depth_scan_counts_objects_and_arrays_alike():
    from members.api_guard import json_too_deep

    body = b'{"a": [{"b": [1]}], "c": {}}'  # depth 4

    assert (json_too_deep(body, 3), json_too_deep(body, 4)) == (True, False)


def test_the_depth_scan_ignores_brackets_inside_strings():
    from members.api_guard import json_too_deep

    body = b'{"a": "[[[[{{{{\\"]]]]", "b": [1, {"c": "}}}}\\\\"}], "d": "[{[{"}'  # depth 3

    assert (json_too_deep(body, 2), json_too_deep(body, 3)) == (True, False)


def test_the_depth_scan_counts_brackets_left_open():
    from members.api_guard import json_too_deep

    assert (json_too_deep(b'[[[[[1]', 4), json_too_deep(b'[[[[[1]', 5)) == (True, False)


def test_the_depth_scan_leaves_mismatched_brackets_to_the_parser():
    from members.api_guard import json_too_deep

    assert not json_too_deep(b"[}" * 100, 5)


def test_the_idempotency_fingerprint_of_very_deep_json_does_not_recurse():
    assert len(request_fingerprint(_deep(100_000))) == 64


# --- Unexpected errors ----------------------------------------------------------------------------------------------


def _broken_view(self, request):
    raise RuntimeError("boom")


def test_an_unexpected_exception_is_a_json_500_with_an_error_id_logged_with_its_traceback(
    api_client, monkeypatch, caplog
):
    monkeypatch.setattr(TierListView, "get", _broken_view)

    with caplog.at_level(logging.ERROR, logger="members.api_guard"):
        response = api_client.get("/api/v1/tiers/")

    _assert_error(response, 500, "server_error")
    error_id = response.json()["error_id"]
    assert error_id in response.json()["detail"]
    [record] = [r for r in caplog.records if r.name == "members.api_guard"]
    assert error_id in record.getMessage()
    assert record.exc_info[0] is RuntimeError


def test_an_unexpected_exception_is_a_json_500_also_with_debug_on(api_client, monkeypatch, settings):
    settings.DEBUG = True
    monkeypatch.setattr(TierListView, "get", _broken_view)

    _assert_error(api_client.get("/api/v1/tiers/"), 500, "server_error")


def test_an_exception_in_a_middleware_is_a_json_500_with_a_logged_error_id(api_key, monkeypatch, caplog):
    def broken(self, request):
        raise RuntimeError("boom")

    monkeypatch.setattr(CommonMiddleware, "process_request", broken)
    client = Client(raise_request_exception=False, HTTP_AUTHORIZATION=f"Api-Key {api_key}")

    with caplog.at_level(logging.ERROR, logger="members.api_guard"):
        response = client.get("/api/v1/tiers/")

    _assert_error(response, 500, "server_error")
    error_id = response.json()["error_id"]
    assert any(error_id in r.getMessage() and r.exc_info for r in caplog.records if r.name == "members.api_guard")


# --- Django's own refusals ------------------------------------------------------------------------------------------


def test_a_disallowed_host_is_a_json_400(api_client):
    _assert_error(api_client.get("/api/v1/tiers/", HTTP_HOST="evil.example"), 400, "bad_request")


def test_more_query_parameters_than_django_takes_is_a_json_400(api_client, settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 10
    query = "&".join(f"p{n}=1" for n in range(11))

    _assert_error(api_client.get(f"/api/v1/leaderboard/?{query}"), 400, "bad_request")


def test_error_details_are_in_the_requests_language():
    client = APIClient(HTTP_ACCEPT_LANGUAGE="zh-hans")

    response = client.get("/api/v1/no-such-thing/")

    assert response.json()["detail"] != "Not found."


# --- The schema states these answers --------------------------------------------------------------------------------


def _operations(client):
    from .test_openapi import _api_operations

    return [(label, method, path, operation) for label, method, path, operation, _s in _api_operations(client)]


def _codes(response):
    return response["content"]["application/json"]["schema"]["allOf"][1]["properties"]["code"]["enum"]


def test_every_post_documents_413_request_too_large_with_the_cap(client, settings):
    settings.LOYALTY_API_MAX_BODY_BYTES = 5000

    for label, method, _path, operation in _operations(client):
        if method == "post":
            assert _codes(operation["responses"]["413"]) == ["request_too_large"], label
            assert "5000 bytes" in operation["responses"]["413"]["description"], label


def test_every_post_documents_400_nesting_too_deep_with_the_limit(client, settings):
    settings.LOYALTY_API_MAX_JSON_DEPTH = 7

    for label, method, _path, operation in _operations(client):
        if method == "post":
            assert "nesting_too_deep" in _codes(operation["responses"]["400"]), label
            assert "7 levels" in operation["responses"]["400"]["description"], label


def test_every_operation_documents_500_server_error_with_its_error_id(client):
    for label, _method, _path, operation in _operations(client):
        response = operation["responses"]["500"]
        assert _codes(response) == ["server_error"], label
        assert response["content"]["application/json"]["schema"]["allOf"][1]["required"] == ["error_id"], label


def test_every_operation_with_a_path_parameter_documents_404_not_found(client):
    for label, _method, path, operation in _operations(client):
        if "{" in path:
            assert "not_found" in _codes(operation["responses"]["404"]), label


def test_the_api_index_is_in_the_schema(client):
    labels = {label for label, *_rest in _operations(client)}

    assert "GET /api/v1/" in labels
