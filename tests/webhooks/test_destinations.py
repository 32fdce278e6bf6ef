"""Where a webhook may go (webhooks.destinations): HTTPS to public addresses only. The host is resolved (from the
`dns` table of conftest, never a real query) and every address it resolves to is checked: loopback, private,
link-local, multicast, reserved, unspecified and shared (CGNAT) addresses are refused, in IPv4 and IPv6 and in their
IPv4-mapped, IPv4-compatible, 6to4 and NAT64 forms; so are other schemes, credentials in the URL and numeric
spellings of a refused address. LOYALTY_WEBHOOK_ALLOW_LOOPBACK and LOYALTY_WEBHOOK_ALLOWED_NETWORKS open what a
deployment allows on purpose."""
import ipaddress

import pytest

from members.webhooks.destinations import DestinationRefused, DestinationUnresolvable, destination_check

HOST = "hooks.shop.test"

# (address, the words the refusal names it by)
REFUSED_ADDRESSES = [
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("::1", "loopback"),
    ("10.0.0.1", "private"),
    ("172.16.5.4", "private"),
    ("172.31.255.255", "private"),
    ("192.168.1.1", "private"),
    ("fd12:3456::1", "private"),
    ("fec0::1", "private"),
    ("169.254.169.254", "link-local"),
    ("fe80::1", "link-local"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("ff02::1", "multicast"),
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "unspecified"),
    ("::", "unspecified"),
    ("100.64.0.1", "shared"),
    ("100.127.255.254", "shared"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "reserved"),
    ("192.0.0.8", "reserved"),
    ("192.0.2.1", "reserved"),
    ("198.18.0.1", "reserved"),
    ("198.51.100.7", "reserved"),
    ("203.0.113.9", "reserved"),
    ("2001:db8::1", "reserved"),
    ("100::1", "reserved"),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "reserved"),  # Teredo
    ("64:ff9b:1::a00:1", "reserved"),  # local-use NAT64
    ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:10.0.0.1", "private"),
    ("::ffff:169.254.169.254", "link-local"),
    ("::ffff:100.64.0.1", "shared"),
    ("::ffff:0.0.0.0", "unspecified"),
    ("::127.0.0.1", "loopback"),  # IPv4-compatible
    ("::10.0.0.1", "private"),
    ("::8.8.8.8", "reserved"),  # IPv4-compatible addresses are deprecated: never a destination
    ("64:ff9b::7f00:1", "loopback"),  # NAT64 of 127.0.0.1
    ("64:ff9b::a9fe:a9fe", "link-local"),
    ("2002:7f00:1::1", "loopback"),  # 6to4 of 127.0.0.1
    ("2002:c0a8:101::1", "private"),
]

PUBLIC_ADDRESSES = [
    "93.184.216.34",
    "8.8.8.8",
    "100.128.0.1",  # just past the shared (CGNAT) range
    "172.32.0.1",  # just past 172.16/12
    "2606:2800:220:1:248:1893:25c8:1946",
    "::ffff:93.184.216.34",  # the IPv4-mapped form of a public address is that address
    "64:ff9b::5db8:d822",  # NAT64 of a public address (DNS64 networks answer with these)
]


@pytest.fixture(autouse=True)
def _production(settings):
    settings.LOYALTY_WEBHOOK_ALLOW_LOOPBACK = False
    settings.LOYALTY_WEBHOOK_ALLOWED_NETWORKS = []


def refusal(url) -> str:
    with pytest.raises(DestinationRefused) as refused:
        destination_check(url)
    return str(refused.value.detail)


@pytest.mark.parametrize(("address", "kind"), REFUSED_ADDRESSES)
def test_a_host_resolving_to_a_non_public_address_is_refused_naming_its_class(dns, address, kind):
    dns[HOST] = [address]

    message = refusal(f"https://{HOST}/hooks")

    assert kind in message and HOST in message


@pytest.mark.parametrize(("address", "kind"), REFUSED_ADDRESSES)
def test_a_non_public_address_written_in_the_url_is_refused(address, kind):
    host = f"[{address}]" if ":" in address else address

    assert kind in refusal(f"https://{host}/hooks")


@pytest.mark.parametrize("address", PUBLIC_ADDRESSES)
def test_a_host_resolving_to_a_public_address_is_accepted_and_pinned_to_it(dns, address):
    dns[HOST] = [address]

    destination = destination_check(f"https://{HOST}:8443/hooks?shop=1#top")

    assert [str(a) for a in destination.addresses] == [str(ipaddress.ip_address(address))]
    assert (destination.scheme, destination.host, destination.port, destination.target) == (
        "https", HOST, 8443, "/hooks?shop=1"
    )


def test_one_non_public_answer_among_public_ones_refuses_the_host(dns):
    dns[HOST] = ["93.184.216.34", "10.0.0.5"]

    assert "10.0.0.5" in refusal(f"https://{HOST}/hooks")


@pytest.mark.parametrize(
    "url",
    [
        "https://2130706433/hooks",  # decimal
        "https://0x7f000001/hooks",  # hexadecimal
        "https://0x7f.1/hooks",  # hexadecimal, short form
        "https://0177.0.0.1/hooks",  # octal
        "https://127.1/hooks",  # short form
        "https://017700000001/hooks",  # octal, one number
        "http://2130706433/",
        "http://0x7f.1/",
    ],
)
def test_numeric_spellings_of_a_loopback_address_are_refused(url):
    assert "loopback" in refusal(url)


@pytest.mark.parametrize("url", ["https://localhost./hooks", "https://127.0.0.1./hooks", "https://LOCALHOST/hooks"])
def test_a_trailing_dot_or_capitals_do_not_hide_a_loopback_host(url):
    assert "loopback" in refusal(url)


@pytest.mark.parametrize(
    "url", ["ftp://shop.example/hooks", "file:///etc/passwd", "gopher://shop.example/", "shop.example/hooks", ""]
)
def test_only_http_and_https_urls_are_accepted(url):
    refusal(url)


@pytest.mark.parametrize("url", ["https://[fe80::1%25eth0]/hooks", "https://[::1%251]/hooks", "https://shop example/"])
def test_a_host_with_a_zone_index_or_a_space_is_not_a_url(url):
    assert "http(s)" in refusal(url)


@pytest.mark.parametrize(
    "url", ["https://user:secret@shop.example/hooks", "https://user@shop.example/hooks", "https://:pw@shop.example/"]
)
def test_credentials_in_the_url_are_refused(url):
    assert "credentials" in refusal(url)


def test_plain_http_to_a_public_host_is_refused(settings):
    settings.DEBUG = True
    settings.LOYALTY_WEBHOOK_ALLOW_LOOPBACK = True

    assert "https://" in refusal("http://shop.example/hooks")


def test_an_unresolvable_host_is_refused_as_such():
    with pytest.raises(DestinationUnresolvable) as unresolved:
        destination_check("https://nowhere.shop.test/hooks")

    assert "nowhere.shop.test" in str(unresolved.value.detail)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8001/hooks", "http://localhost:8001/hooks", "https://[::1]/hooks",
            "http://[::ffff:127.0.0.1]:8001/hooks", "http://localhost./hooks"],
)
def test_loopback_over_http_or_https_is_allowed_for_local_development(settings, url):
    settings.LOYALTY_WEBHOOK_ALLOW_LOOPBACK = True

    destination = destination_check(url)

    assert all(address.is_loopback or address.ipv4_mapped.is_loopback for address in destination.addresses)


@pytest.mark.parametrize("url", ["http://10.0.0.1/hooks", "https://169.254.169.254/latest", "https://0.0.0.0:8001/"])
def test_allowing_loopback_allows_nothing_else(settings, url):
    settings.LOYALTY_WEBHOOK_ALLOW_LOOPBACK = True

    refusal(url)


def test_allowed_networks_and_hosts_open_internal_destinations_on_purpose(settings, dns):
    settings.LOYALTY_WEBHOOK_ALLOWED_NETWORKS = ["10.1.0.0/16", "hooks.internal", "fd00:1::/32"]
    dns["hooks.internal"] = ["10.9.9.9"]
    dns["other.internal"] = ["10.9.9.9"]

    destination_check("https://10.1.2.3/hooks")
    destination_check("https://[::ffff:10.1.2.3]/hooks")
    destination_check("https://[fd00:1::5]/hooks")
    destination_check("https://hooks.internal./hooks")  # a listed name may resolve to an internal address
    assert "private" in refusal("https://10.2.0.1/hooks")
    assert "private" in refusal("https://other.internal/hooks")
    assert "loopback" in refusal("https://127.0.0.1/hooks")


def test_an_allowed_internal_destination_still_needs_https(settings):
    settings.LOYALTY_WEBHOOK_ALLOWED_NETWORKS = ["10.1.0.0/16"]

    assert "https://" in refusal("http://10.1.2.3/hooks")


def test_the_unspecified_address_is_never_allowed(settings):
    settings.LOYALTY_WEBHOOK_ALLOWED_NETWORKS = ["0.0.0.0/0"]  # a careless setting does not reach 0.0.0.0 (localhost)

    assert "unspecified" in refusal("https://0.0.0.0/hooks")
