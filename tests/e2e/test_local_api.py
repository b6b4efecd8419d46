"""The local API over HTTP: the real template's handlers, and `python -m local.dev` as a whole."""

from __future__ import annotations

import base64
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis

from local.api import LocalApi
from local.invoker import Invoker
from local.services import free_port
from local.template import Template, parse_template
from such_market.container import MAX_HANDED_OVER
from such_market.db.connection import APPLICATION_NAME
from tests.conftest import ADMIN_TOKEN
from tests.fixtures.handlers.recorder import DELIVERIES

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"


def _request(
    api_url: str,
    method: str,
    target: str,
    *,
    headers: Sequence[tuple[str, str]] = (),
    body: bytes | None = None,
) -> tuple[int, dict[str, str], bytes]:
    host, port = api_url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.putrequest(method, target)
        for name, value in headers:
            connection.putheader(name, value)
        if body is not None:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


@pytest.fixture
def local_api(lambda_env: dict[str, str]) -> Iterator[LocalApi]:
    template = Template.load(ROOT / "template.yaml")
    with LocalApi(template, Invoker(template), port=0, quiet=True) as api:
        yield api


def test_health_is_served_with_database_and_cache_status(local_api):
    # Given the local API over the real template, a migrated database and the cache
    # When GET /api/health is requested
    status, headers, body = _request(local_api.url, "GET", "/api/health")
    # Then it answers 200 JSON with the database and cache status
    assert status == 200, body
    assert headers["content-type"].startswith("application/json")
    assert headers["apigw-requestid"]
    payload = json.loads(body)
    assert payload["database"]["status"] == "ok"
    assert payload["cache"]["status"] == "ok"


@pytest.mark.parametrize(("method", "path"), [("GET", "/api/nope"), ("POST", "/api/health"), ("GET", "/")])
def test_unknown_routes_are_404_like_api_gateway(local_api, method, path):
    # Given a method and path no route has
    # When it is requested
    status, _, body = _request(local_api.url, method, path, body=b"" if method == "POST" else None)
    # Then API Gateway's 404 comes back
    assert (status, json.loads(body)) == (404, {"message": "Not Found"})


def test_admin_route_without_authorization_is_401(local_api):
    status, _, body = _request(local_api.url, "GET", "/api/admin/ownership/stats")
    assert (status, json.loads(body)) == (401, {"message": "Unauthorized"})


def test_admin_route_with_a_wrong_token_is_403(local_api):
    headers = [("Authorization", "Bearer not-the-admin-token-at-all")]
    status, _, body = _request(local_api.url, "GET", "/api/admin/ownership/stats", headers=headers)
    assert (status, json.loads(body)) == (403, {"message": "Forbidden"})


def test_admin_route_with_the_admin_token_is_served(local_api):
    headers = [("Authorization", f"Bearer {ADMIN_TOKEN}")]
    status, _, body = _request(local_api.url, "GET", "/api/admin/ownership/stats", headers=headers)
    assert status == 200, body
    assert isinstance(json.loads(body), dict)


def _our_sessions(db) -> int:
    row = db.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = %s",
        (APPLICATION_NAME,),
    ).fetchone()
    return int(row[0])


def test_requests_on_new_tcp_connections_leave_the_database_connection_count_flat(local_api, db):
    # Given the local API, warmed by a few requests (a thread per TCP connection, like a curl loop)
    for _ in range(5):
        assert _request(local_api.url, "GET", "/api/health")[0] == 200
    # When many more requests come, each on a new TCP connection (more than PostgreSQL's client limit
    # would allow if each thread kept its own connection open)
    statuses = {_request(local_api.url, "GET", "/api/health")[0] for _ in range(300)}
    # Then every one was served, and our sessions stay as many as threads ran at once (a few), not 300
    assert statuses == {200}
    assert _our_sessions(db) <= MAX_HANDED_OVER + 1


# ---------------------------------------------------------------------------------------------------
# The event and response shapes, with the fixture handlers
# ---------------------------------------------------------------------------------------------------


@pytest.fixture
def fixture_api(services, cache: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalApi]:
    monkeypatch.setenv("REDIS_URL", services.redis_url)

    def function(handler: str, method: str, path: str) -> dict[str, Any]:
        return {
            "Type": "AWS::Serverless::Function",
            "Properties": {
                "CodeUri": "handlers/",
                "Handler": handler,
                "Events": {"Api": {"Type": "HttpApi", "Properties": {"Method": method, "Path": path}}},
            },
        }

    document = {
        "Resources": {
            "RecorderFunction": function("recorder.lambda_handler", "ANY", "/items/{id}/{proxy+}"),
            "FailingFunction": function("failing.lambda_handler", "GET", "/broken"),
        }
    }
    template = parse_template(document, FIXTURES / "api_template.yaml")
    with LocalApi(template, Invoker(template), port=0, quiet=True) as api:
        yield api


def _recorded_event(cache: redis.Redis) -> dict[str, Any]:
    (item,) = cache.lrange(DELIVERIES, 0, -1)
    return json.loads(item)["event"]


def test_the_handler_gets_an_http_api_v2_event(fixture_api, cache):
    # Given a request with repeated headers and query parameters, cookies and a JSON body
    headers = [
        ("X-Multi", "a"),
        ("X-Multi", "b"),
        ("Cookie", "s=1; t=2"),
        ("Content-Type", "application/json"),
        ("User-Agent", "tests/1"),
    ]
    # When it is sent to a templated route
    status, _, body = _request(
        fixture_api.url, "POST", "/items/42/a/b%20c?q=1&q=2&x=", headers=headers, body=b'{"k": 1}'
    )
    # Then a plain dict result comes back as JSON 200, and the handler saw a v2 event
    assert (status, json.loads(body)) == (200, {"recorded": True})
    event = _recorded_event(cache)
    assert event["version"] == "2.0"
    assert event["routeKey"] == "ANY /items/{id}/{proxy+}"
    assert event["rawPath"] == "/items/42/a/b%20c"
    assert event["rawQueryString"] == "q=1&q=2&x="
    assert event["queryStringParameters"] == {"q": "1,2", "x": ""}
    assert event["pathParameters"] == {"id": "42", "proxy": "a/b c"}
    assert event["cookies"] == ["s=1", "t=2"]
    assert event["headers"]["x-multi"] == "a,b"
    assert "cookie" not in event["headers"]
    assert event["body"] == '{"k": 1}'
    assert event["isBase64Encoded"] is False
    context = event["requestContext"]
    assert context["http"] == {
        "method": "POST",
        "path": "/items/42/a/b%20c",
        "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.1",
        "userAgent": "tests/1",
    }
    assert context["stage"] == "$default"
    assert context["routeKey"] == event["routeKey"]
    assert context["requestId"]
    assert isinstance(context["timeEpoch"], int)
    assert {"accountId", "apiId", "domainName", "time"} <= set(context)


def test_a_binary_body_is_base64_encoded(fixture_api, cache):
    # Given a binary body
    data = bytes(range(256))
    # When it is sent
    status, _, _ = _request(
        fixture_api.url, "PUT", "/items/1/x", headers=[("Content-Type", "application/octet-stream")], body=data
    )
    # Then the handler got it base64-encoded
    assert status == 200
    event = _recorded_event(cache)
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == data


def test_a_handler_exception_is_a_500_like_api_gateway(fixture_api, capfd):
    # Given a handler that raises
    # When its route is requested
    status, _, body = _request(fixture_api.url, "GET", "/broken")
    # Then the client gets API Gateway's 500 and the traceback goes to stderr
    assert (status, json.loads(body)) == (500, {"message": "Internal Server Error"})
    assert "Traceback" in capfd.readouterr().err


# ---------------------------------------------------------------------------------------------------
# python -m local.dev
# ---------------------------------------------------------------------------------------------------


def _collect_output(process: subprocess.Popen[str], lines: list[str]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        lines.append(line)


@pytest.mark.slow
def test_make_dev_serves_and_stops_everything_on_ctrl_c(dev_data_dir):
    # Given `python -m local.dev` on a free port, starting its own PostgreSQL and Valkey (their data in a
    # temporary directory: never the developer's .local/data)
    port = free_port()
    env = {name: value for name, value in os.environ.items() if name not in {"DATABASE_URL", "REDIS_URL"}}
    env |= {"PORT": str(port), "PYTHONUNBUFFERED": "1", "DEV_DATA_DIR": str(dev_data_dir)}
    process = subprocess.Popen(
        [sys.executable, "-m", "local.dev"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=_collect_output, args=(process, lines), daemon=True)
    reader.start()
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while not any(f"API          {url}" in line for line in lines):
            assert process.poll() is None, "".join(lines)
            assert time.monotonic() < deadline, "".join(lines)
            time.sleep(0.1)
        output = "".join(lines)
        assert "admin token" in output
        assert "Authorization: Bearer" in output
        assert "/api/admin/ownership/stats" in output
        assert "event bus" in output
        assert "OutboxRelayFunction" in output
        assert f"data         {dev_data_dir}" in output

        # When /api/health is requested
        status, _, body = _request(url, "GET", "/api/health")
        # Then it is served
        assert status == 200, body

        children = psutil.Process(process.pid).children(recursive=True)
        names = " ".join(_name(child) for child in children)
        assert "postgres" in names
        assert "valkey" in names

        # When Ctrl-C is sent
        process.send_signal(signal.SIGINT)
        returncode = process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    reader.join(timeout=5)

    # Then it exits 0 and none of the servers it started survives
    assert returncode == 0, "".join(lines)
    assert "stopped." in "".join(lines)
    survivors = [child for child in children if _alive(child)]
    assert not survivors, survivors


def _name(process: psutil.Process) -> str:
    """The process name, or "" for a short-lived child (a PostgreSQL backend) that already exited."""
    try:
        return process.name()
    except psutil.NoSuchProcess:
        return ""


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
