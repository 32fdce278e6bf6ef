"""Shared set-up for the webhook tests: a real HTTP endpoint on 127.0.0.1 (http.server in a thread, port 0) whose
answers a test scripts, and subscriptions to it; name resolution from a table (`dns`), never a real DNS query, and
connections to loopback only (a test that would reach another address fails instead)."""
import ipaddress
import json
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from django.core.cache import cache

from members.webhooks import destinations
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
    body: bytes | None = None  # the answer's body (default: a small JSON document)
    received: list = field(default_factory=list)
    sni: list = field(default_factory=list)  # over TLS: the server names clients asked for
    lock: threading.Lock = field(default_factory=threading.Lock)


def _handler(receiver: Receiver):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with receiver.lock:
                receiver.received.append(Received(self.path, dict(self.headers.items()), body))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
            if receiver.delay:
                time.sleep(receiver.delay)
            self.send_response(status)
            if 300 <= status < 400:
                self.send_header("Location", "http://127.0.0.1:9/elsewhere")
            payload = receiver.body if receiver.body is not None else json.dumps({"ok": 200 <= status < 300}).encode()
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    return Handler


@pytest.fixture(autouse=True)
def dns(monkeypatch):
    """Name resolution from this table (a name maps to a list of addresses, or to a function answering one list per
    query); any other name does not resolve, and IP literals resolve as the system would, without a query. Every
    connection is checked: a test that would connect outside 127.0.0.0/8 or ::1 fails."""
    table = {"localhost": ["127.0.0.1", "::1"], "shop.example": ["93.184.216.34"]}
    real_getaddrinfo, real_create_connection = socket.getaddrinfo, socket.create_connection

    def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
        name = host.decode() if isinstance(host, bytes) else host
        key = (name or "").lower().rstrip(".")
        if key in table:
            answers = table[key]() if callable(table[key]) else table[key]
            return [
                (socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port or 0, 0, 0))
                if ":" in address else
                (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port or 0))
                for address in answers
            ]
        return real_getaddrinfo(host, port, family, type, proto, flags | socket.AI_NUMERICHOST)

    def create_connection(address, *args, **kwargs):
        host, port = address[:2]
        for *_info, sockaddr in getaddrinfo(host, port):
            assert ipaddress.ip_address(sockaddr[0]).is_loopback, f"a test tried to connect to {sockaddr[0]}"
        return real_create_connection(address, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket, "create_connection", create_connection)
    return table


TLS = Path(__file__).parent / "tls"  # a test CA and a certificate it signed for hooks.shop.test (openssl, 100 years)


def _serve(tls: ssl.SSLContext | None = None):
    state = Receiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    scheme = "https" if tls is not None else "http"
    state.url = f"{scheme}://127.0.0.1:{server.server_address[1]}/hooks/loyalty"
    thread = threading.Thread(target=server.serve_forever, name="webhook-receiver", daemon=True)
    thread.start()
    return state, server


@pytest.fixture
def receiver(settings):
    """The endpoint, on 127.0.0.1: reachable only with loopback destinations allowed (as for local development)."""
    settings.LOYALTY_WEBHOOK_ALLOW_LOOPBACK = True
    state, server = _serve()
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def tls_receiver(settings, monkeypatch):
    """The endpoint over TLS with a certificate for hooks.shop.test only, trusted by the sender; `sni` lists the
    names clients asked for."""
    settings.LOYALTY_WEBHOOK_ALLOW_LOOPBACK = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(TLS / "hooks.shop.test.pem")
    state, server = _serve(context)
    context.sni_callback = lambda sock, name, ctx: state.sni.append(name)
    monkeypatch.setattr(destinations, "tls_context", lambda: ssl.create_default_context(cafile=str(TLS / "ca.pem")))
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
