"""A minimal HTTP API (payload v2) router: the one place that maps routes and errors to responses.

Each function serves one or two routes, and API Gateway already did the routing: the event's
``routeKey`` (``"GET /api/profile/{fid}"``) names the route, so dispatch is a dict lookup and the
path parameters come from the event. That keeps the cached-read path to a few microseconds on top of
the cache GET (Powertools' resolver cost several times that; see bench/). Routes also carry their
OpenAPI description (summary, tags, query parameters, response models), from which
``local/openapi.py`` builds the API document; models are named by reference (``ModelRef``) so that
a function never imports pydantic or its response models at run time.

Errors are mapped here and only here: ``such_market.failures`` turns an ``ApiError`` or an
infrastructure failure (database, cache, upstream) into its status and the SPEC error shape
(``Retry-After`` when it has one); an unknown route → 404; anything else → a logged, generic 500
without internals.
"""

from __future__ import annotations

import base64
import binascii
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from such_market import deadline, post_invoke
from such_market.analytics.recorder import Recorder, recorder_for
from such_market.analytics.traffic import TrafficKey
from such_market.config import CacheSettings, FunctionSettings, load_settings
from such_market.container import per_container
from such_market.errors import BadRequestError, error_body
from such_market.http.responses import Response, failure_response
from such_market.validation import DEFAULT_PAGE_SIZE

Route = Callable[..., Response]
ModelRef = str
"""A pydantic model documenting a body, named ``"package.module:Name"``; only ``local/openapi.py`` imports it."""
_DEFAULT_PAGE_SIZE = str(DEFAULT_PAGE_SIZE)
Middleware = Callable[["Request", Callable[[], Response]], Response]
_PATH_PARAMETER = re.compile(r"<(\w+)>")


@dataclass(frozen=True, slots=True)
class QueryParameter:
    """A documented query parameter of a route (OpenAPI only; parsing stays in such_market.validation)."""

    name: str
    description: str
    schema: Mapping[str, object] = field(default_factory=lambda: {"type": "string"})
    required: bool = False


@dataclass(frozen=True, slots=True)
class RouteSpec:
    """A registered route: how to call it and how to document it."""

    method: str
    path: str  # with {param} placeholders, as in template.yaml
    function: Route
    summary: str
    tags: tuple[str, ...]
    responses: Mapping[int, Any]
    query: tuple[QueryParameter, ...]
    request_body: ModelRef | None = None  # the model documenting a JSON body (OpenAPI only)
    family: str | None = None  # the endpoint family its cache-fronted answers are recorded under
    path_parameters: tuple[str, ...] = field(init=False)  # the names in ``path``, read once per request

    def __post_init__(self) -> None:
        object.__setattr__(self, "path_parameters", tuple(re.findall(r"{(\w+)}", self.path)))


class Request:
    """The request being handled: the raw HTTP API v2 event with convenient, lazy accessors."""

    __slots__ = ("raw_event",)

    def __init__(self, raw_event: Mapping[str, Any]) -> None:
        self.raw_event = raw_event

    @property
    def headers(self) -> Mapping[str, str]:
        headers: Mapping[str, str] = self.raw_event.get("headers") or {}
        return headers

    @property
    def query_string_parameters(self) -> Mapping[str, str]:
        query: Mapping[str, str] = self.raw_event.get("queryStringParameters") or {}
        return query

    @property
    def body(self) -> bytes:
        """The body as sent (what a webhook's signature covers): base64-decoded when API Gateway encoded it
        (``isBase64Encoded``), else the UTF-8 of ``body``. 400 ``invalid_body`` when it is neither."""
        body = self.raw_event.get("body")
        if body is None:
            return b""
        if not isinstance(body, str):
            raise BadRequestError("the request body is not text", code="invalid_body")
        if self.raw_event.get("isBase64Encoded"):
            try:
                return base64.b64decode(body, validate=True)
            except (binascii.Error, ValueError):
                raise BadRequestError("the request body is not valid base64", code="invalid_body") from None
        return body.encode()

    @property
    def decoded_body(self) -> str:
        """The body as text (``body``, undecodable UTF-8 replaced: the JSON parse then refuses it)."""
        return self.body.decode("utf-8", errors="replace")


class Api:
    """The routes of one function, and the dispatch of its events."""

    def __init__(self) -> None:
        self.routes: dict[str, RouteSpec] = {}
        self.settings_model: type[FunctionSettings] | None = None
        """Set by ``api_handler``; the OpenAPI document derives the edge's failures (502/503) from its parts."""
        self._middlewares: list[Middleware] = []
        self._local = threading.local()  # the local runtime may run one function on several threads

    @property
    def current_event(self) -> Request:
        """The request this thread is handling."""
        request: Request = self._local.request
        return request

    def route(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        tags: Sequence[str] = (),
        responses: Mapping[int, Any] | None = None,
        query: Sequence[QueryParameter] = (),
        request_body: ModelRef | None = None,
        family: str | None = None,
    ) -> Callable[[Route], Route]:
        """Register ``function`` for ``method path`` (``<name>`` marks a path parameter); a route with a
        ``family`` has its cache-fronted answers (those with ``X-Cache``) recorded in the analytics."""
        template = _PATH_PARAMETER.sub(r"{\1}", path)

        def register(function: Route) -> Route:
            spec = RouteSpec(
                method, template, function, summary, tuple(tags), responses or {}, tuple(query), request_body, family
            )
            self.routes[f"{method} {template}"] = spec
            return function

        return register

    def get(self, path: str, **options: Any) -> Callable[[Route], Route]:  # noqa: ANN401 - route()'s keywords
        return self.route("GET", path, **options)

    def post(self, path: str, **options: Any) -> Callable[[Route], Route]:  # noqa: ANN401 - route()'s keywords
        return self.route("POST", path, **options)

    def use(self, middlewares: Sequence[Middleware]) -> None:
        """Run ``middlewares`` around every route of this function (outermost first)."""
        self._middlewares.extend(middlewares)

    def resolve(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """Handle one HTTP API v2 event; returns the Lambda proxy response."""
        request = Request(event)
        self._local.request = request
        spec = self.routes.get(event.get("routeKey", ""))
        try:
            if spec is None:
                response = Response(404, error_body("no such route", "route_not_found"))
            else:
                parameters = event.get("pathParameters") or {}

                def call() -> Response:
                    return spec.function(**{name: parameters.get(name, "") for name in spec.path_parameters})

                response = self._run(request, call)
        except Exception as error:
            response = failure_response(error)
        return response.to_lambda()

    def _run(self, request: Request, call: Callable[[], Response]) -> Response:
        for middleware in reversed(self._middlewares):
            call = _wrapped(middleware, request, call)
        return call()


def _wrapped(middleware: Middleware, request: Request, call: Callable[[], Response]) -> Callable[[], Response]:
    return lambda: middleware(request, call)


def create_api() -> Api:
    """A new router for one function."""
    return Api()


def api_handler(app: Api, settings_model: type[FunctionSettings]) -> Callable[[dict[str, Any], object], dict[str, Any]]:
    """The ``lambda_handler`` of an API function: validate its settings (a misconfigured container
    fails at its first invocation with a message naming the variable), dispatch the event under the
    invocation's deadline (every wait stops in time to answer before Lambda's timeout), and record a
    cache-fronted answer in the container's analytics (no round trip: an EMF line; on Lambda the
    post-invoke extension writes it to Valkey after the response, before the container can freeze;
    elsewhere the recorder's flusher writes behind)."""
    app.settings_model = settings_model
    post_invoke.enable()  # init phase: the only time Lambda accepts an extension's registration
    if CacheSettings in settings_model.parts().values():
        from such_market.cache import client

        client.preload()  # init phase, in SnapStart's snapshot: the first answer is one round trip

    def lambda_handler(event: dict[str, Any], context: object) -> dict[str, Any]:
        try:
            return _record(app, event, context)
        finally:
            extension = post_invoke.enabled()
            if extension is not None:
                extension.finished()

    def _record(app: Api, event: dict[str, Any], context: object) -> dict[str, Any]:
        recorder = _recorder_for(settings_model)
        started = time.perf_counter()
        token = deadline.begin(context)
        try:
            response = app.resolve(event)
        finally:
            deadline.end(token)
        if recorder is None:
            return response
        elapsed = time.perf_counter() - started
        spec = app.routes.get(event.get("routeKey", ""))
        outcome = response["headers"].get("X-Cache")
        if spec is not None and spec.family is not None and outcome is not None:
            recorder.observe(spec.family, outcome, elapsed, _traffic_subject(spec.family, event, response))
        return response

    return lambda_handler


def _traffic_subject(family: str, event: Mapping[str, Any], response: Mapping[str, Any]) -> TrafficKey | None:
    """What the cache warmer counts of a successful collection answer: its contract address as requested
    (normalized at flush time, off this path), and the page size of a first NFT page (no page, cursor or
    filter beyond page 0)."""
    parameters = event.get("pathParameters")
    address = parameters.get("contractAddress") if parameters else None
    if address is None or response["statusCode"] != 200:
        return None
    if family != "nfts-page":
        return (address, None)
    query = event.get("queryStringParameters")
    if not query:
        return (address, _DEFAULT_PAGE_SIZE)
    if query.get("page", "0") != "0" or "cursor" in query:
        return (address, None)
    for name in query:  # a loop, not any(<generator>): this runs on every HIT of a page
        if name.startswith("trait."):
            return (address, None)
    return (address, query.get("pageSize", _DEFAULT_PAGE_SIZE))


@per_container()
def _recorder_for(settings_model: type[FunctionSettings]) -> Recorder | None:
    """The analytics recorder of a function whose settings have a cache with analytics on, else ``None``."""
    cache = load_settings(settings_model).optional_part(CacheSettings)
    if cache is None or not cache.cache_analytics:
        return None
    recorder = recorder_for(cache)
    extension = post_invoke.enabled()
    if extension is not None:
        extension.add(recorder.flush)  # every invocation's figures are written before the container freezes
    return recorder
