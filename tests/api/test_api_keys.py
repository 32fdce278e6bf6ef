"""Every API call needs `Authorization: Api-Key <key>`; a key only does what its scopes allow."""
import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from members.models import ApiKey

pytestmark = pytest.mark.django_db

ENDPOINTS = [
    ("get", "/api/v1/members/someone/"),
    ("post", "/api/v1/members/"),
    ("post", "/api/v1/orders/"),
]


@pytest.mark.parametrize("method, url", ENDPOINTS)
def test_no_key_is_401_with_an_api_key_challenge(method, url):
    response = getattr(APIClient(), method)(url, {}, format="json")

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Api-Key"
    assert response.json()["code"] == "not_authenticated"


@pytest.mark.parametrize("header", ["Api-Key wrong.key", "Api-Key ", "Bearer abc", "Api-Key nodot"])
def test_an_invalid_key_is_401(header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)

    response = client.get("/api/v1/members/someone/")

    assert response.status_code == 401


def test_a_revoked_key_is_401(api_key):
    ApiKey.objects.update(revoked=True)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {api_key}")

    response = client.get("/api/v1/members/someone/")

    assert response.status_code == 401
    assert response.json()["code"] == "authentication_failed"


def test_a_read_only_key_cannot_post_orders(api_client_with_scopes):
    client = api_client_with_scopes("read")

    response = client.post("/api/v1/orders/", {}, format="json")

    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"


def test_a_missing_scope_is_named_in_the_403(api_client_with_scopes, member):
    client = api_client_with_scopes("read")

    response = client.post("/api/v1/redemptions/", {}, format="json", HTTP_IDEMPOTENCY_KEY="k-1")

    assert (response.status_code, response.json()["code"]) == (403, "permission_denied")
    assert response.json()["detail"] == 'This API key lacks the scope "redemptions" this endpoint needs.'


@pytest.mark.parametrize("header", ["Bearer abc.def", "Token abc.def", "ApiKey abc.def", "abc.def", "api-key abc.def"])
def test_a_wrong_authorization_scheme_is_401_with_a_hint(header, api_key):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)

    response = client.get("/api/v1/members/someone/")

    assert (response.status_code, response.json()["code"]) == (401, "authentication_failed")
    assert response.json()["detail"] == 'Send the key as "Authorization: Api-Key <key>".'
    assert response["WWW-Authenticate"] == "Api-Key"


def test_the_right_key_under_a_wrong_scheme_is_refused_with_the_hint(api_key):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key}")

    response = client.get("/api/v1/tiers/")

    assert response.status_code == 401
    assert "Api-Key <key>" in response.json()["detail"]


def test_a_read_only_key_can_read_a_member(api_client_with_scopes, member):
    response = api_client_with_scopes("read").get(f"/api/v1/members/{member.external_id}/")

    assert response.status_code == 200


def test_the_key_is_stored_hashed_never_in_clear(api_key):
    stored = ApiKey.objects.get()

    assert api_key not in (stored.id, stored.hashed_key)
    assert stored.hashed_key.startswith("sha512$$")


def test_using_a_key_records_when_it_was_last_used(api_client, member):
    api_client.get(f"/api/v1/members/{member.external_id}/")

    assert ApiKey.objects.get().last_used_at is not None


def test_create_api_key_command_prints_a_working_key_once(capsys, member):
    call_command("create_api_key", "web shop", "--scopes", "read")
    key = capsys.readouterr().out.strip().splitlines()[-1]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")

    assert client.get(f"/api/v1/members/{member.external_id}/").status_code == 200
    assert client.post("/api/v1/orders/", {}, format="json").status_code == 403
    assert ApiKey.objects.get().scopes == ["read"]
