"""The notification client posts only to public addresses, checked on the address it connects to.

A real TCP listener on 127.0.0.1 stands where a user's URL leads: the test looks at whether our client
connected to it (an accepted connection), not at what a server answered.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator

import httpx
import pytest

from local.notification_stub import NotificationClientStub
from such_market.errors import ConfigurationError
from such_market.notifications.addresses import is_forbidden
from such_market.notifications.client import NotificationClient
from such_market.notifications.rules import Message
from such_market.notifications.settings import NotificationSettings
from such_market.upstream.errors import UpstreamBadRequest, UpstreamError

MESSAGE = Message("Hi", "There", "https://such.market/")


class Listener:
    """A TCP socket on 127.0.0.1 that accepts nothing by itself: it only counts who connected."""

    def __init__(self) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(16)
        self.socket.setblocking(False)
        self.port = int(self.socket.getsockname()[1])

    def connections(self) -> int:
        count = 0
        while True:
            try:
                connection, _ = self.socket.accept()
            except BlockingIOError:
                return count
            connection.close()
            count += 1


@pytest.fixture
def listener() -> Iterator[Listener]:
    opened = Listener()
    try:
        yield opened
    finally:
        opened.socket.close()


def a_client(**options: object) -> NotificationClient:
    return NotificationClient(
        request_attempts=1, connect_timeout_seconds=0.5, read_timeout_seconds=0.3, sleep=lambda _: None, **options
    )  # type: ignore[arg-type]


def nip_io(host: str, port: int) -> list[str]:
    """A resolver that knows what nip.io answers (the tests never use the network)."""
    if host.endswith(".nip.io"):
        return [".".join(host.removesuffix(".nip.io").split(".")[-4:])]
    return [info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


@pytest.mark.parametrize("host", ["127.1", "0x7f.1", "0177.0.0.1", "127.0.0.1.nip.io", "app.127.0.0.1.nip.io"])
def test_hosts_that_lead_to_loopback_are_refused_before_connecting(listener: Listener, host: str) -> None:
    # Given a URL whose host passes as a name but leads to 127.0.0.1
    client = a_client(resolver=nip_io)
    # When the default client (production settings) is asked to post there
    with pytest.raises(UpstreamBadRequest, match=r"not public|not a valid URL"):
        client.send(url=f"https://{host}:{listener.port}/notify", notification_id="n", message=MESSAGE, tokens=["t"])
    # Then it never connected
    assert listener.connections() == 0


def test_a_name_that_resolves_to_public_and_private_addresses_is_refused(listener: Listener) -> None:
    client = a_client(resolver=lambda host, port: ["93.184.215.14", "127.0.0.1"])
    with pytest.raises(UpstreamBadRequest):
        client.send(url=f"https://c.example:{listener.port}/n", notification_id="n", message=MESSAGE, tokens=["t"])
    assert listener.connections() == 0


def test_the_checked_address_is_the_one_connected_to(listener: Listener) -> None:
    # A name that resolves to loopback when allowed (the local stub allowance): the connection goes to the
    # address the guard checked, one resolution only (no second lookup that could answer differently)
    lookups: list[str] = []

    def once(host: str, port: int) -> list[str]:
        lookups.append(host)
        return ["127.0.0.1"]

    client = a_client(allow_local_stub=True, resolver=once)
    with pytest.raises(UpstreamError):  # the listener never answers: a read timeout
        client.send(url=f"http://c.example:{listener.port}/n", notification_id="n", message=MESSAGE, tokens=["t"])
    assert lookups == ["c.example"]
    assert listener.connections() == 1


def test_the_local_stub_allowance_admits_loopback_only(listener: Listener) -> None:
    for private in ("10.0.0.1", "169.254.169.254", "192.168.1.1", "::ffff:169.254.169.254"):
        client = a_client(allow_local_stub=True, resolver=lambda host, port, address=private: [address])
        with pytest.raises(UpstreamBadRequest):
            client.send(url=f"http://c.example:{listener.port}/n", notification_id="n", message=MESSAGE, tokens=["t"])
    assert listener.connections() == 0


def test_the_default_client_refuses_the_local_stub_and_the_allowance_reaches_it() -> None:
    with NotificationClientStub() as stub:
        host_url = stub.url.replace("http://127.0.0.1", "https://127.1")
        with pytest.raises(UpstreamBadRequest):
            NotificationClient.from_settings(NotificationSettings()).send(
                url=host_url, notification_id="n", message=MESSAGE, tokens=["t"]
            )
        assert stub.requests == []
        local = NotificationClient.from_settings(NotificationSettings(notification_allow_loopback_for_local_stub=True))
        result = local.send(url=stub.url, notification_id="n", message=MESSAGE, tokens=["t"])
        assert result.successful == {"t"}
        assert len(stub.requests) == 1


def test_a_deployed_function_refuses_the_local_stub_allowance(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFICATION_ALLOW_LOOPBACK_FOR_LOCAL_STUB", "true")
    monkeypatch.delenv("AWS_SAM_LOCAL", raising=False)
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "such-market-SendNotificationsFunction")
    with pytest.raises(ConfigurationError, match="NOTIFICATION_ALLOW_LOOPBACK_FOR_LOCAL_STUB"):
        NotificationSettings()
    monkeypatch.setenv("AWS_SAM_LOCAL", "true")  # sam local invoke runs the stub locally too
    assert NotificationSettings().notification_allow_loopback_for_local_stub
    monkeypatch.delenv("NOTIFICATION_ALLOW_LOOPBACK_FOR_LOCAL_STUB")
    monkeypatch.delenv("AWS_SAM_LOCAL")
    assert not NotificationSettings().notification_allow_loopback_for_local_stub


def test_redirects_are_not_followed() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(302, headers={"location": "http://169.254.169.254/latest/meta-data/"})

    client = NotificationClient(transport=httpx.MockTransport(handler), sleep=lambda _: None, request_attempts=1)
    with pytest.raises(UpstreamError):
        client.send(url="https://c.example/n", notification_id="n", message=MESSAGE, tokens=["t"])
    assert seen == ["https://c.example/n"]


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.255.0.9",
        "0.0.0.0",  # noqa: S104 - an address to classify, not one to bind
        "10.1.2.3",
        "172.16.0.1",
        "192.168.0.1",
        "100.64.0.1",
        "169.254.169.254",
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "192.0.2.1",
        "::",
        "::1",
        "fe80::1",
        "fc00::1",
        "fd00:ec2::254",
        "ff02::1",
        "2001:db8::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "64:ff9b::a9fe:a9fe",
        "2002:7f00:1::1",
    ],
)
def test_non_public_addresses_are_forbidden(address: str) -> None:
    assert is_forbidden(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["93.184.215.14", "1.1.1.1", "2606:4700:4700::1111", "::ffff:1.1.1.1"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert not is_forbidden(ipaddress.ip_address(address))


def test_loopback_is_allowed_only_with_the_local_stub_allowance() -> None:
    loopback = ipaddress.ip_address("127.0.0.1")
    assert is_forbidden(loopback)
    assert not is_forbidden(loopback, allow_loopback=True)
    assert is_forbidden(ipaddress.ip_address("169.254.169.254"), allow_loopback=True)
