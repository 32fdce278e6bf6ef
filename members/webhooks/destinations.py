"""Where a webhook may be sent: HTTPS to public addresses only (no server-side request forgery through a subscription).

**The rule.** The URL is http(s) without credentials. Its host is resolved (an IP literal in any spelling the system
accepts, `2130706433` or `0x7f.1` included, is read as the address it means) and *every* address it resolves to must
be public: loopback, private (RFC 1918, IPv6 unique- and site-local), link-local (cloud metadata at 169.254.169.254),
multicast, unspecified (0.0.0.0 reaches this machine on Linux), shared (CGNAT 100.64/10) and reserved or
documentation ranges are refused, in IPv4 and IPv6, and so is an IPv4-mapped, IPv4-compatible, NAT64 or 6to4 IPv6
address whose embedded IPv4 address is one of those (IPv4-compatible addresses are deprecated and refused whatever
they embed; Teredo is in the reserved 2001::/23). One refused answer among public ones refuses the host (a
rebinding resolver mixes them). The scheme is https, so the body (member ids) is encrypted and the name verified.

**What a deployment opens on purpose.** LOYALTY_WEBHOOK_ALLOW_LOOPBACK (default: DEBUG) allows loopback destinations,
over plain http too, for a receiver on the developer's machine. LOYALTY_WEBHOOK_ALLOWED_NETWORKS lists networks
(`10.1.0.0/16`) and host names (`hooks.internal`, matched exactly) that a brand reaches inside its network on purpose:
an address in a listed network, or any address of a listed name, is allowed; still over https. The unspecified and
multicast addresses are never a destination, whatever the settings.

**When.** Checked when an active subscription is saved (the admin shows the reason), and again at every delivery,
right before connecting: the delivery connects to the very addresses it checked (`open_connection` pins them; the
Host header, TLS SNI and certificate check keep the name), so a name that resolved to a public address when saved
and to an internal one now (DNS rebinding) is refused, and no second lookup can answer differently between the check
and the connection. Redirects are not followed (webhooks.delivery). Connections are direct: a proxy from the
environment is not used, as it would connect to a name we did not check.
"""
import http.client
import ipaddress
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from members.errors import InvalidInput

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class DestinationRefused(InvalidInput):
    """The URL is not a place webhooks go: nothing is sent there."""

    code = "webhook_destination_refused"
    field = "url"


class DestinationUnresolvable(InvalidInput):
    """The host has no address now (perhaps for a while: a delivery retries)."""

    code = "webhook_destination_unresolvable"
    field = "url"


# Address classes, as the refusal names them (a context: "private" or "reserved" mean other things elsewhere).
LOOPBACK = pgettext_lazy("address class", "loopback")
UNSPECIFIED = pgettext_lazy("address class", "unspecified")
MULTICAST = pgettext_lazy("address class", "multicast")
RESERVED = pgettext_lazy("address class", "reserved")

# The address classes refused, first match wins (IANA special-purpose registries, RFC 6890 and successors).
REFUSED_NETWORKS = [
    (kind, [ipaddress.ip_network(network) for network in networks])
    for kind, networks in [
        (LOOPBACK, ["127.0.0.0/8", "::1/128"]),
        (UNSPECIFIED, ["0.0.0.0/8", "::/128"]),
        (
            pgettext_lazy("address class", "private"),
            ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7", "fec0::/10"],
        ),
        (pgettext_lazy("address class", "shared (CGNAT)"), ["100.64.0.0/10"]),
        (pgettext_lazy("address class", "link-local"), ["169.254.0.0/16", "fe80::/10"]),
        (MULTICAST, ["224.0.0.0/4", "ff00::/8"]),
        (
            RESERVED,
            [
                "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "198.18.0.0/15", "198.51.100.0/24",
                "203.0.113.0/24", "240.0.0.0/4",  # with the broadcast address
                "::/96", "100::/64", "2001::/23", "2001:db8::/32", "3fff::/20", "5f00::/16", "64:ff9b:1::/48",
            ],
        ),
    ]
]
NAT64 = ipaddress.ip_network("64:ff9b::/96")
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


@dataclass(frozen=True)
class Destination:
    """A checked URL: where to connect (`addresses`, in the resolver's order) and what to ask for."""

    scheme: str
    host: str  # lower case, without a trailing dot: the Host header, SNI and certificate name
    port: int
    target: str  # path and query
    addresses: tuple


# --- Addresses ------------------------------------------------------------------------------------------------------


def _embedded_ipv4(address: ipaddress.IPv6Address) -> tuple[str, ipaddress.IPv4Address] | None:
    """The IPv4 address an IPv6 address stands for, and the form: what the packets really reach."""
    if address.ipv4_mapped is not None:
        return "IPv4-mapped", address.ipv4_mapped
    if address.sixtofour is not None:
        return "6to4", address.sixtofour
    if address in NAT64:
        return "NAT64", ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in IPV4_COMPATIBLE and int(address) > 1:  # :: and ::1 are the unspecified and loopback addresses
        return "IPv4-compatible", ipaddress.IPv4Address(int(address))
    return None


def address_class(address: IPAddress) -> str | None:
    """The class of a non-public address ("loopback", "private, IPv4-mapped 10.0.0.1"...), or None when public."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            form, ipv4 = embedded
            kind = address_class(ipv4)
            if kind is not None:
                return _("%(kind)s, as %(form)s %(address)s") % {"kind": kind, "form": form, "address": ipv4}
            if form == "IPv4-compatible":
                return RESERVED
            return None  # the public IPv4 address it stands for
    for kind, networks in REFUSED_NETWORKS:
        if any(address in network for network in networks):
            return kind
    # Whatever else this Python's registry knows not to be global (new IANA ranges).
    return None if address.is_global else RESERVED


def _is_localhost_name(host: str) -> bool:
    return host == "localhost" or host.endswith(".localhost")  # RFC 6761: always loopback


def _is_loopback(address: IPAddress) -> bool:
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


def allowed_on_purpose() -> tuple[list, set]:
    """LOYALTY_WEBHOOK_ALLOWED_NETWORKS as (networks, host names)."""
    networks, hosts = [], set()
    for entry in settings.LOYALTY_WEBHOOK_ALLOWED_NETWORKS:
        entry = entry.strip().lower().rstrip(".")
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            if "/" in entry or ":" in entry or entry.replace(".", "").isdigit():  # a network spelt wrong, not a name
                raise ImproperlyConfigured(f"LOYALTY_WEBHOOK_ALLOWED_NETWORKS: {entry!r} is not a network.") from None
            hosts.add(entry)
    return networks, hosts


def _refusal(host: str, address: IPAddress, *, networks: list, hosts: set) -> str | None:
    """Why `address` (an answer for `host`) is not a destination, or None."""
    kind = address_class(address)
    if kind is None:
        return None
    if address.is_unspecified or address.is_multicast:
        pass  # never a destination
    elif host in hosts or any(_in_network(address, network) for network in networks):
        return None
    elif settings.LOYALTY_WEBHOOK_ALLOW_LOOPBACK and _is_loopback(address):
        return None
    return _("%(host)s resolves to %(address)s (%(kind)s): webhooks are sent to public addresses only.") % {
        "host": host, "address": address, "kind": kind,
    }


def _in_network(address: IPAddress, network) -> bool:
    if address.version != network.version:
        embedded = _embedded_ipv4(address) if address.version == 6 else None
        return embedded is not None and embedded[1] in network
    return address in network


# --- Names ----------------------------------------------------------------------------------------------------------


def _literal(host: str) -> IPAddress | None:
    """The address an IP literal stands for, in any spelling the C library accepts (2130706433, 0x7f.1, 0177.0.0.1,
    127.1), without a lookup; None for a name."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, ValueError):
        return None


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `host` stands for, in the resolver's order (the order connections try them)."""
    literal = _literal(host)
    if literal is not None:
        return [literal]
    try:
        answers = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError, OSError) as exc:
        raise DestinationUnresolvable(
            _("%(host)s could not be resolved (%(error)s).") % {"host": host, "error": exc}
        ) from None
    addresses = []
    for *_info, sockaddr in answers:
        address = ipaddress.ip_address(sockaddr[0].split("%")[0])  # an IPv6 zone index is not part of the address
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise DestinationUnresolvable(_("%(host)s has no address.") % {"host": host})
    return addresses


# --- URLs -----------------------------------------------------------------------------------------------------------


def destination_check(url: str, *, resolve_host: bool = True) -> Destination:
    """The destination `url` stands for, checked (module docstring); raises DestinationRefused or, when the name
    does not resolve, DestinationUnresolvable. With `resolve_host=False` a name is not looked up (only the URL and
    an IP literal are checked): for a subscription saved inactive."""
    try:
        parts = urlsplit(url or "")
        port = parts.port
    except ValueError:
        raise DestinationRefused(_("Enter an http(s) URL.")) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DestinationRefused(_("Enter an http(s) URL."))
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise DestinationRefused(_("Remove the credentials from the URL: the signature authenticates webhooks."))
    try:
        # urlsplit lower-cases the name; "localhost." is localhost; a non-ASCII name is looked up as IDNA.
        host = parts.hostname.rstrip(".").encode("idna").decode("ascii")
    except UnicodeError:
        raise DestinationRefused(_("Enter an http(s) URL.")) from None
    if "%" in host or any(char.isspace() for char in host) or (":" in host and _literal(host) is None):
        raise DestinationRefused(_("Enter an http(s) URL."))  # an IPv6 zone index names an interface, not a host
    port = port or (443 if parts.scheme == "https" else 80)
    # Plain http is for a loopback receiver only (and only where allowed): its addresses say whether it is one.
    plain_http_refused = DestinationRefused(_("Webhooks are signed, not encrypted: use an https:// URL."))
    plain_http = parts.scheme == "http"
    # Plain http must be seen to reach loopback, so its name is looked up even unasked (but "localhost" is loopback).
    resolved = resolve_host or _literal(host) is not None or (plain_http and not _is_localhost_name(host))
    try:
        addresses = resolve(host, port) if resolved else []
    except DestinationUnresolvable:
        if plain_http and not settings.LOYALTY_WEBHOOK_ALLOW_LOOPBACK:
            raise plain_http_refused from None
        raise
    networks, hosts = allowed_on_purpose()
    for address in addresses:
        reason = _refusal(host, address, networks=networks, hosts=hosts)
        if reason is not None:
            raise DestinationRefused(reason)
    if plain_http and not (settings.LOYALTY_WEBHOOK_ALLOW_LOOPBACK and all(map(_is_loopback, addresses))):
        raise plain_http_refused
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Destination(parts.scheme, host, port, target, tuple(addresses))


# --- Connecting to what was checked ---------------------------------------------------------------------------------


def _connect(destination: Destination, timeout: float) -> socket.socket:
    """A TCP connection to the first checked address that answers (as socket.create_connection tries a name's)."""
    error = None
    for address in destination.addresses:
        try:
            return socket.create_connection((str(address), destination.port), timeout)
        except OSError as exc:
            error = exc
    raise error or OSError(f"{destination.host} has no address")


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, destination: Destination, timeout: float):
        super().__init__(destination.host, destination.port, timeout=timeout)
        self.destination = destination

    def connect(self):
        self.sock = _connect(self.destination, self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, destination: Destination, timeout: float):
        super().__init__(destination.host, destination.port, timeout=timeout, context=tls_context())
        self.destination = destination

    def connect(self):
        # SNI and the certificate check use the name; the socket goes to the address we checked.
        self.sock = self._context.wrap_socket(
            _connect(self.destination, self.timeout), server_hostname=self.destination.host
        )


def tls_context() -> ssl.SSLContext:
    """The system's trusted certificates, hostname checked (a function so a test can trust its own)."""
    return ssl.create_default_context()


def open_connection(destination: Destination, *, timeout: float) -> http.client.HTTPConnection:
    """An HTTP(S) connection to `destination`'s checked addresses only (not connected until the request)."""
    connection_class = _PinnedHTTPSConnection if destination.scheme == "https" else _PinnedHTTPConnection
    return connection_class(destination, timeout)
