"""A storefront request whose worker dies mid-flight, for tests/api/test_idempotency_lease.py.

`python -m tests.api.crashing_request API_KEY IDEMPOTENCY_KEY BLOCK BODY_JSON` POSTs BODY to /api/v1/orders/ through
Django's test client in this process, on the database DATABASE_URL names, and blocks the view at BLOCK (before-write:
before the order is recorded; after-write: once the order's transaction has committed). It prints "blocked" there
and sleeps until the test kills it with SIGKILL: nothing after that point runs, as when a worker is killed.
"""
import json
import os
import sys
import time


def block_here() -> None:
    print("blocked", flush=True)
    time.sleep(600)
    sys.exit("not killed")


def main(api_key: str, idempotency_key: str, block: str, body: str) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.test.utils import setup_test_environment
    from rest_framework.test import APIClient

    import members.api

    setup_test_environment()  # the test client's host, as under pytest
    record = members.api.order_record

    def order_record(**kwargs):
        if block == "before-write":
            block_here()
        result = record(**kwargs)  # one transaction: committed when it returns
        block_here()
        return result

    members.api.order_record = order_record
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {api_key}")
    client.post("/api/v1/orders/", json.loads(body), format="json", HTTP_IDEMPOTENCY_KEY=idempotency_key)
    sys.exit("the request finished: it should have blocked")


if __name__ == "__main__":
    main(*sys.argv[1:])
