"""The local HTTP API: routes read from the template, handlers called with real HTTP API v2 events.

``LocalApi`` serves the template's ``HttpApi`` routes on a loopback port the way API Gateway's HTTP
API does with the Lambda proxy integration, payload format 2.0:

- routing: exact paths win over templated ones (``{param}`` matches one segment, ``{proxy+}`` the
  rest of the path); a route with method ``ANY`` matches every method; no route → 404
  ``{"message":"Not Found"}``;
- the event: ``version`` "2.0", ``routeKey``, ``rawPath``, ``rawQueryString``, ``cookies``, lower-cased
  headers with repeats joined by commas, ``queryStringParameters`` (repeats joined by commas),
  ``pathParameters``, ``requestContext`` and the body (base64 with ``isBase64Encoded`` unless text);
- the response: a dict with ``statusCode`` is a structured response (``headers``,
  ``multiValueHeaders``, ``cookies`` → ``Set-Cookie``, ``body`` decoded when ``isBase64Encoded``);
  any other value is sent as JSON with status 200, as API Gateway assumes;
- routes with a Lambda authorizer: a missing identity header → 401 ``{"message":"Unauthorized"}``
  without calling the authorizer; otherwise the authorizer gets a REQUEST authorizer v2 event and a
  simple response ``{"isAuthorized": false}`` → 403 ``{"message":"Forbidden"}``. Results are not
  cached (``ReauthorizeEvery`` is ignored: every request is authorized afresh);
- a handler (or authorizer) that raises or returns something malformed → 500
  ``{"message":"Internal Server Error"}``, with the traceback on stderr.

With ``docs=True`` (``make dev``), a GET of a path no route serves may also be the Swagger UI page
(``/api/docs``), its vendored script and stylesheet (``/api/docs/assets/…``) or the generated OpenAPI
document (``/api/openapi.json``): ``local.docs``. A local convenience only: API Gateway serves none of
them.

One line per request goes to stderr: method, path, status, milliseconds.
"""

from __future__ import annotations

import base64
import json
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from local.docs import docs_response
from local.http_server import BackgroundHttpServer
from local.invoker import LOCAL_ACCOUNT_ID, Invoker, JsonValue
from local.template import RouteSpec, Template

DEFAULT_PORT = 3000
LOCAL_API_ID = "localapi00"
MAX_BODY_BYTES = 10 * 1024 * 1024  # HTTP API's payload limit
_HOP_BY_HOP = frozenset({"connection", "content-length", "transfer-encoding", "keep-alive"})
_TEXT_TYPES = ("text/", "application/json", "application/xml", "application/javascript")
_TEXT_SUFFIXES = ("+json", "+xml")


@dataclass(frozen=True, slots=True)
class LocalResponse:
    """What the local API sends back: status, headers (repeats allowed) and body bytes."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


def _message(status: int, message: str) -> LocalResponse:
    return LocalResponse(
        status, [("Content-Type", "application/json")], json.dumps({"message": message}, separators=(",", ":")).encode()
    )


@dataclass(frozen=True, slots=True)
class RouteMatch:
    route: RouteSpec
    path_parameters: dict[str, str]


class Router:
    """Matches a method and path to a route: exact paths first, then the most specific template."""

    def __init__(self, routes: Sequence[RouteSpec]) -> None:
        self.routes = sorted(routes, key=self._specificity)

    @staticmethod
    def _specificity(route: RouteSpec) -> tuple[int, int, int, int]:
        segments = route.segments
        greedy = sum(segment.endswith("+}") for segment in segments)
        params = sum(segment.startswith("{") for segment in segments)
        # Exact before templated, fewer parameters first, longer paths first, ANY after methods.
        return (greedy, params, -len(segments), route.method == "ANY")

    def match(self, method: str, path: str) -> RouteMatch | None:
        parts = tuple(unquote(part) for part in path.strip("/").split("/")) if path.strip("/") else ()
        for route in self.routes:
            if route.method not in {method, "ANY"}:
                continue
            parameters = _match_segments(route.segments, parts)
            if parameters is not None:
                return RouteMatch(route, parameters)
        return None


def _match_segments(template: tuple[str, ...], parts: tuple[str, ...]) -> dict[str, str] | None:
    parameters: dict[str, str] = {}
    for index, segment in enumerate(template):
        if segment.startswith("{") and segment.endswith("+}"):
            rest = parts[index:]
            if not rest:
                return None
            parameters[segment[1:-2]] = "/".join(rest)
            return parameters
        if index >= len(parts):
            return None
        if segment.startswith("{") and segment.endswith("}"):
            if not parts[index]:
                return None
            parameters[segment[1:-1]] = parts[index]
        elif segment != parts[index]:
            return None
    return parameters if len(template) == len(parts) else None


@dataclass(frozen=True, slots=True)
class IncomingRequest:
    """An HTTP request as the local API received it."""

    method: str
    target: str
    """The request target as sent: path and query string (``/api/x?a=1``)."""
    headers: Sequence[tuple[str, str]]
    body: bytes = b""
    source_ip: str = "127.0.0.1"
    protocol: str = "HTTP/1.1"


def _is_text(content_type: str | None) -> bool:
    if not content_type:
        return True  # API Gateway passes a body without Content-Type as text when it decodes
    media = content_type.split(";", 1)[0].strip().lower()
    return media.startswith(_TEXT_TYPES) or media.endswith(_TEXT_SUFFIXES)


class LocalApi:
    """The template's HTTP API, served on ``host:port`` by a threading HTTP server."""

    def __init__(
        self,
        template: Template,
        invoker: Invoker,
        *,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        account_id: str = LOCAL_ACCOUNT_ID,
        api_id: str = LOCAL_API_ID,
        quiet: bool = False,
        docs: bool = False,
    ) -> None:
        self.template = template
        self.invoker = invoker
        self.router = Router(template.routes)
        self.account_id = account_id
        self.api_id = api_id
        self.quiet = quiet
        self.docs = docs
        self._host = host
        self._requested_port = port
        self._server: BackgroundHttpServer | None = None

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> LocalApi:
        self._server = BackgroundHttpServer(self._host, self._requested_port, _handler_class(self), name="local-api")
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> LocalApi:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the local API is not started")
        return self._server.port

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self.port}"

    # --- one request -----------------------------------------------------------------------------

    def handle(self, request: IncomingRequest) -> LocalResponse:
        """Route ``request``, authorize it when its route says so, invoke the handler, shape the reply."""
        started = time.monotonic()
        path = urlsplit(request.target).path or "/"
        response = self._dispatch(request, path)
        if not self.quiet:
            elapsed = (time.monotonic() - started) * 1000
            print(
                f"[api] {request.method} {path} {response.status} {elapsed:.0f}ms",
                file=sys.stderr,
                flush=True,
            )
        return response

    def _dispatch(self, request: IncomingRequest, path: str) -> LocalResponse:
        if len(request.body) > MAX_BODY_BYTES:
            return _message(413, "Request Entity Too Large")
        match = self.router.match(request.method, path)
        if match is None:
            served = docs_response(request.method, path) if self.docs else None
            if served is not None:
                headers = [
                    ("Content-Type", served.content_type),
                    ("Cache-Control", served.cache_control),
                    ("X-Content-Type-Options", "nosniff"),
                ]
                return LocalResponse(served.status, headers, served.body)
            return _message(404, "Not Found")
        event = self.build_event(request, match)
        request_id = str(event["requestContext"]["requestId"])
        route = match.route
        if route.authorizer is not None:
            denied = self._authorize(route, event)
            if denied is not None:
                return self._with_request_id(denied, request_id)
        try:
            result = self.invoker.invoke(route.function_id, event)
            response = lambda_response(result)
        except Exception as error:  # the handler's failure becomes API Gateway's 500
            self._log_error(f"{route.function_id} failed on {route.route_key}", error)
            response = _message(500, "Internal Server Error")
        return self._with_request_id(response, request_id)

    @staticmethod
    def _with_request_id(response: LocalResponse, request_id: str) -> LocalResponse:
        return LocalResponse(response.status, [*response.headers, ("Apigw-Requestid", request_id)], response.body)

    def _authorize(self, route: RouteSpec, event: dict[str, Any]) -> LocalResponse | None:
        headers: dict[str, str] = event["headers"]
        identity = [headers.get(name.lower(), "") for name in route.identity_headers]
        if not identity or not all(identity):
            return _message(401, "Unauthorized")
        if route.authorizer_function_id is None:
            self._log_error(f"authorizer {route.authorizer} has no function this runtime can call", None)
            return _message(500, "Internal Server Error")
        authorizer_event = self.build_authorizer_event(route, event, identity)
        try:
            result = self.invoker.invoke(route.authorizer_function_id, authorizer_event)
        except Exception as error:  # an authorizer failure is API Gateway's 500
            self._log_error(f"authorizer {route.authorizer_function_id} failed", error)
            return _message(500, "Internal Server Error")
        if not isinstance(result, dict) or not isinstance(result.get("isAuthorized"), bool):
            self._log_error(f"authorizer {route.authorizer_function_id} returned {result!r}", None)
            return _message(500, "Internal Server Error")
        if not result["isAuthorized"]:
            return _message(403, "Forbidden")
        context = result.get("context")
        event["requestContext"]["authorizer"] = {"lambda": context if isinstance(context, dict) else None}
        return None

    # --- events ----------------------------------------------------------------------------------

    def build_event(self, request: IncomingRequest, match: RouteMatch) -> dict[str, Any]:
        """The HTTP API payload 2.0 event of ``request`` on ``match``'s route."""
        split = urlsplit(request.target)
        path = split.path or "/"
        headers: dict[str, str] = {}
        cookies: list[str] = []
        for name, value in request.headers:
            key = name.lower()
            if key == "cookie":
                cookies.extend(part.strip() for part in value.split(";") if part.strip())
                continue
            headers[key] = f"{headers[key]},{value}" if key in headers else value
        query: dict[str, str] = {}
        for name, value in parse_qsl(split.query, keep_blank_values=True):
            query[name] = f"{query[name]},{value}" if name in query else value
        now = datetime.now(UTC)
        route_key = match.route.route_key
        request_context: dict[str, Any] = {
            "accountId": self.account_id,
            "apiId": self.api_id,
            "domainName": headers.get("host", f"{self._host}:{self._requested_port}"),
            "domainPrefix": headers.get("host", self._host).split(".", 1)[0].split(":", 1)[0],
            "http": {
                "method": request.method,
                "path": path,
                "protocol": request.protocol,
                "sourceIp": request.source_ip,
                "userAgent": headers.get("user-agent", ""),
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": route_key,
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        }
        event: dict[str, Any] = {
            "version": "2.0",
            "routeKey": route_key,
            "rawPath": path,
            "rawQueryString": split.query,
            "headers": headers,
            "requestContext": request_context,
            "isBase64Encoded": False,
        }
        if cookies:
            event["cookies"] = cookies
        if query:
            event["queryStringParameters"] = query
        if match.path_parameters:
            event["pathParameters"] = match.path_parameters
        if request.body:
            text = None
            if _is_text(headers.get("content-type")):
                try:
                    text = request.body.decode("utf-8")
                except UnicodeDecodeError:
                    text = None
            if text is None:
                event["body"] = base64.b64encode(request.body).decode("ascii")
                event["isBase64Encoded"] = True
            else:
                event["body"] = text
        return event

    def build_authorizer_event(self, route: RouteSpec, event: Mapping[str, Any], identity: list[str]) -> dict[str, Any]:
        """The REQUEST authorizer payload 2.0 event for ``event`` on ``route``."""
        context = event["requestContext"]
        method = context["http"]["method"]
        route_arn = (
            f"arn:aws:execute-api:{self.invoker.region}:{self.account_id}:{self.api_id}/$default/"
            f"{method}{event['rawPath']}"
        )
        authorizer_event: dict[str, Any] = {
            "version": "2.0",
            "type": "REQUEST",
            "routeArn": route_arn,
            "identitySource": identity,
            "routeKey": event["routeKey"],
            "rawPath": event["rawPath"],
            "rawQueryString": event["rawQueryString"],
            "headers": event["headers"],
            "requestContext": context,
        }
        for optional in ("cookies", "queryStringParameters", "pathParameters"):
            if optional in event:
                authorizer_event[optional] = event[optional]
        return authorizer_event

    def _log_error(self, what: str, error: BaseException | None) -> None:
        detail = "".join(traceback.format_exception(error)) if error is not None else ""
        print(f"[api] {what}\n{detail}".rstrip(), file=sys.stderr, flush=True)


def lambda_response(result: JsonValue) -> LocalResponse:
    """Turn a handler's return value into the HTTP response API Gateway (payload 2.0) would send."""
    if not (isinstance(result, dict) and "statusCode" in result):
        return LocalResponse(200, [("Content-Type", "application/json")], json.dumps(result).encode())
    status = result["statusCode"]
    if isinstance(status, bool) or not isinstance(status, int | str) or not 100 <= int(status) <= 599:
        raise ValueError(f"malformed Lambda proxy response: statusCode {status!r}")
    headers = _response_headers(result)
    body = result.get("body")
    if body is None:
        data = b""
    elif not isinstance(body, str):
        data = json.dumps(body).encode()
    elif result.get("isBase64Encoded") is True:
        data = base64.b64decode(body)
    else:
        data = body.encode("utf-8")
    return LocalResponse(int(status), headers, data)


def _response_headers(result: Mapping[str, JsonValue]) -> list[tuple[str, str]]:
    headers: list[tuple[str, str]] = []
    raw_headers = result.get("headers") or {}
    multi = result.get("multiValueHeaders") or {}
    if not isinstance(raw_headers, dict) or not isinstance(multi, dict):
        raise ValueError("malformed Lambda proxy response: headers must be objects")
    for name, value in raw_headers.items():
        if name.lower() not in _HOP_BY_HOP and name not in multi:
            headers.append((name, _header_value(value)))
    for name, values in multi.items():
        if name.lower() not in _HOP_BY_HOP:
            headers.extend((name, _header_value(value)) for value in (values if isinstance(values, list) else [values]))
    cookies = result.get("cookies") or []
    if not isinstance(cookies, list):
        raise ValueError("malformed Lambda proxy response: cookies must be a list")
    headers.extend(("Set-Cookie", str(cookie)) for cookie in cookies)
    return headers


def _header_value(value: JsonValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _handler_class(api: LocalApi) -> type[BaseHTTPRequestHandler]:
    class ApiRequestHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "such-market-local-api"

        def log_message(self, format: str, *args: object) -> None:
            del format, args  # LocalApi.handle logs one line per request

        def _read_body(self) -> bytes:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                chunks: list[bytes] = []
                while True:
                    size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in {b"\r\n", b"\n", b""}:
                            pass  # trailers
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length > 0 else b""

        def _serve(self) -> None:
            request = IncomingRequest(
                method=self.command,
                target=self.path,
                headers=list(self.headers.items()),
                body=self._read_body(),
                source_ip=self.client_address[0],
                protocol=self.request_version,
            )
            response = api.handle(request)
            self.send_response(response.status)
            for name, value in response.headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(response.body)

        def __getattr__(self, name: str) -> Callable[[], None]:
            # http.server looks up do_<METHOD>; every method is routed (unknown ones answer 404 like
            # API Gateway), never http.server's own 501 page.
            if name.startswith("do_"):
                return self._serve
            raise AttributeError(name)

    return ApiRequestHandler
