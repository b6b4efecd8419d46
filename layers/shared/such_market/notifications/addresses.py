"""Where notifications may be posted: public addresses only, checked on the addresses actually connected to.

Notification URLs come from signed events, that is from any Farcaster account, so a host name proves
nothing: ``127.1``, ``0x7f.1``, ``0177.0.0.1`` and ``127.0.0.1.nip.io`` all reach the loopback interface,
and a name may resolve to one address when it is registered and another when it is called. So the check
is made where the connection is made: ``GuardedBackend`` (an httpcore network backend, under the
notification client's httpx transport) resolves the host itself, refuses the connection when any of its
addresses is not public (``is_forbidden``: loopback, private, link-local, shared, multicast, reserved,
unspecified, documentation, and the IPv4 address inside an IPv4-mapped, NAT64, 6to4 or Teredo IPv6 one), and
connects to the address it checked — never to a name resolved again. TLS still verifies the URL's host
name (httpcore sends it as SNI and checks the certificate against it). The refusal is
``ForbiddenAddressError``, raised before any byte is sent; the client turns it into a final
``UpstreamBadRequest`` (retrying cannot help).

``allow_loopback`` exists for the local notification-client stub only (``make dev``, tests), which
listens on 127.0.0.1: it admits loopback addresses and nothing else that is not public (never the VPC,
never the instance metadata service). ``NotificationSettings`` refuses it in a deployed function.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from typing import Final

import httpcore
import httpx

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]
"""``(host, port)`` → the addresses a connection to it would go to (text, in the resolver's order)."""

_UNIQUE_LOCAL_V6: Final = ipaddress.ip_network("fc00::/7")
_NAT64: Final = ipaddress.ip_network("64:ff9b::/96")


class ForbiddenAddressError(Exception):
    """A notification URL's host resolves to an address we never post to (or to none)."""


def resolve(host: str, port: int) -> list[str]:
    """The system resolver's TCP addresses of ``host`` (numeric forms like ``127.1`` included)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise ForbiddenAddressError(f"the host does not resolve ({type(error).__name__})") from None
    return [str(info[4][0]) for info in infos]


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (IPv4-mapped, 6to4, Teredo's client), if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.teredo[1] if address.teredo is not None else None


def is_forbidden(address: Address, *, allow_loopback: bool = False) -> bool:
    """Whether ``address`` is not a public unicast address (loopback is admitted when ``allow_loopback``)."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:
            return True
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return is_forbidden(embedded, allow_loopback=allow_loopback)
        if address in _UNIQUE_LOCAL_V6:
            return True
    if address.is_loopback:
        return not allow_loopback
    # is_global is false for private, shared (100.64/10), link-local, documentation, benchmarking and
    # other special-purpose ranges; multicast and reserved ranges are refused on their own account.
    return (
        not address.is_global
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or address.is_link_local
        or address.is_private
    )


def checked_addresses(host: str, port: int, *, resolver: Resolver, allow_loopback: bool) -> list[str]:
    """``host``'s addresses when every one is allowed; ``ForbiddenAddressError`` otherwise."""
    addresses = resolver(host, port)
    if not addresses:
        raise ForbiddenAddressError("the host has no address")
    for text in addresses:
        try:
            address = ipaddress.ip_address(text.split("%", 1)[0])
        except ValueError:
            raise ForbiddenAddressError("the host resolves to something that is not an IP address") from None
        if "%" in text or is_forbidden(address, allow_loopback=allow_loopback):
            raise ForbiddenAddressError("the host resolves to an address that is not public")
    return addresses


class GuardedBackend(httpcore.NetworkBackend):
    """httpcore's synchronous backend, connecting only to checked public addresses (see the module doc)."""

    def __init__(self, *, allow_loopback: bool = False, resolver: Resolver = resolve) -> None:
        self._inner = httpcore.SyncBackend()
        self._allow_loopback = allow_loopback
        self._resolver = resolver

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = checked_addresses(host, port, resolver=self._resolver, allow_loopback=self._allow_loopback)
        last_error: Exception | None = None
        for address in addresses:
            try:
                return self._inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as error:
                last_error = error
        assert last_error is not None  # noqa: S101 - checked_addresses returns at least one address
        raise last_error

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None
    ) -> httpcore.NetworkStream:
        raise ForbiddenAddressError("notifications are never posted to a unix socket")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def guarded_transport(*, allow_loopback: bool = False, resolver: Resolver = resolve) -> httpx.HTTPTransport:
    """An httpx transport whose connections go only where ``GuardedBackend`` allows (no proxies)."""
    transport = httpx.HTTPTransport()
    # httpx does not expose httpcore's network backend: the pool is rebuilt with ours and httpx's TLS context.
    transport._pool = httpcore.ConnectionPool(
        ssl_context=httpx.create_ssl_context(),
        network_backend=GuardedBackend(allow_loopback=allow_loopback, resolver=resolver),
    )
    return transport
