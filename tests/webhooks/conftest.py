"""Shared set-up for the webhook tests: a real HTTP endpoint on 127.0.0.1 (http.server in a thread, port 0) whose
answers a test scripts, and subscriptions to it."""
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.cache import cache

from members.webhooks.models import WebhookEvent, WebhookSubscription
from members.webhooks.services import CACHE_KEY


@dataclass
class Received:
    path: str
    headers: dict
    body: bytes

    @property
    def json(self):
        return json.loads(self.body)


@dataclass
class Receiver:
    """The endpoint: `statuses` are answered in turn (then 200), `delay` seconds before each answer."""

    url: str = ""
    statuses: list = field(default_factory=list)
    delay: float = 0.0
    received: list = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _handler(receiver: Receiver):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with receiver.lock:
                receiver.received.append(Received(self.path, dict(self.headers.items()), body))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
            if receiver.delay:
                time.sleep(receiver.delay)
            self.send_response(status)
            if 300 <= status < 400:
                self.send_header("Location", "http://127.0.0.1:9/elsewhere")
            payload = json.dumps({"ok": 200 <= status < 300}).encode()
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    return Handler


@pytest.fixture
def receiver():
    state = Receiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/loyalty"
    thread = threading.Thread(target=server.serve_forever, name="webhook-receiver", daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def _fresh_subscription_cache():
    """Which events have subscribers is cached across requests; each test starts without it."""
    cache.delete(CACHE_KEY)
    yield
    cache.delete(CACHE_KEY)


@pytest.fixture
def subscribe(db, receiver):
    """A subscription to `events` (default: all four) at the receiver."""

    def make(*events, url=None, active=True, name="storefront"):
        return WebhookSubscription.objects.create(
            name=name, url=url or receiver.url, events=list(events or WebhookEvent.values), active=active
        )

    return make
