"""Calls the template's handlers in this process, the way the Lambda Python runtime would.

One ``Container`` per function: its handler module is imported once, on the first invocation (the
cold start), and reused afterwards (a warm container). As on Lambda, the function's code directory
and the shared layer are on ``sys.path``, so a handler imports ``such_market`` and its sibling modules
by their plain names. The handler module itself is loaded from its file under a unique module name
(``_local_lambda_<LogicalId>_<module>``), so two functions whose handler files share a name cannot
collide and a test that imports ``health`` directly gets its own copy.

Events and results cross a JSON round trip, as they do through the Lambda service: the handler gets a
copy it may change, and a result that JSON cannot represent fails like on Lambda.

All functions share this process's environment (``os.environ``): ``local_environment`` builds the
one environment the local runtime gives every function, from the template's values, then the local
runtime's defaults (``LOCAL_DEFAULTS``: what a single-node loopback Valkey and no X-Ray daemon need),
then the caller's overrides (the user's shell, and whatever the runtime must control). Timeouts are
reported, not enforced (a thread cannot be killed).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType, ModuleType
from typing import Any, Final, cast

from local.template import FunctionSpec, Template

LAYER_DIR = Path(__file__).resolve().parent.parent / "layers" / "shared"
LOCAL_ACCOUNT_ID = "123456789012"
LOCAL_REGION = "us-east-1"
LOCAL_DEFAULTS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "REDIS_CLUSTER": "false",  # the template defaults to cluster mode; a local Valkey is one node
        "REDIS_TLS": "false",  # loopback, plain TCP
        "POWERTOOLS_TRACE_DISABLED": "true",  # no X-Ray daemon locally
    }
)
"""What the local runtime gives a function instead of the template's value, unless the shell says otherwise."""
LOCAL_AWS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": LOCAL_REGION,
        "AWS_REGION": LOCAL_REGION,
    }
)
"""Dummy credentials boto3 signs requests to the local bus with: nothing signed with them can reach AWS."""

Handler = Callable[[Any, Any], object]
type JsonValue = dict[str, JsonValue] | list[JsonValue] | str | int | float | bool | None
"""What an invocation returns: the handler's result after Lambda's JSON round trip."""


class InvocationError(RuntimeError):
    """The function could not be called, or returned something Lambda could not return."""


@dataclass
class LambdaContext:
    """The context object the Lambda Python runtime passes to a handler."""

    function_name: str
    memory_limit_in_mb: int
    invoked_function_arn: str
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = ""
    identity: Any = None
    client_context: Any = None
    deadline_monotonic: float = 0.0

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline_monotonic - time.monotonic()) * 1000))


def ensure_layer_on_path() -> None:
    """Put the shared layer on ``sys.path`` (Lambda's /opt/python) so ``such_market`` imports."""
    if str(LAYER_DIR) not in sys.path:
        sys.path.insert(0, str(LAYER_DIR))


def local_environment(
    template: Template,
    overrides: Mapping[str, str],
    *,
    defaults: Mapping[str, str] = LOCAL_DEFAULTS,
    function_ids: tuple[str, ...] | None = None,
) -> dict[str, str]:
    """The environment of the local functions; for each variable, the first of: ``overrides``,
    ``defaults``, the template's resolvable value (a function's own, else the Globals').

    Every ``*_SECRET_ARN`` variable is removed: locally secrets are given as plain values
    (``DATABASE_URL``, ``ADMIN_TOKEN``). Functions share one process, so when two functions give one
    variable different values, ``InvocationError`` says which (give it in ``overrides`` to settle it).
    """
    ids = function_ids if function_ids is not None else tuple(template.functions)
    settled = {**defaults, **overrides}
    merged: dict[str, str] = dict(template.global_environment)
    owners: dict[str, str] = {}
    for function_id in ids:
        for name, value in template.function(function_id).environment.items():
            if name in settled:
                continue
            if name in owners and merged[name] != value:
                raise InvocationError(
                    f"{function_id} and {owners[name]} set {name} differently; one process cannot "
                    f"give both their own value: set {name} explicitly"
                )
            merged[name] = value
            owners[name] = function_id
    merged.update(settled)
    return {name: value for name, value in merged.items() if not name.endswith("_SECRET_ARN")}


class Container:
    """One warm Lambda container of one function: the handler module, imported once."""

    def __init__(self, spec: FunctionSpec, *, account_id: str = LOCAL_ACCOUNT_ID, region: str = LOCAL_REGION) -> None:
        self.spec = spec
        self.account_id = account_id
        self.region = region
        self.module_name = f"_local_lambda_{spec.logical_id}_{spec.handler_module.replace('.', '_')}"
        self._handler: Handler | None = None
        self._lock = threading.Lock()

    @property
    def function_arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account_id}:function:{self.spec.logical_id}"

    def handler(self) -> Handler:
        """The handler, importing its module first if this container is cold."""
        with self._lock:
            if self._handler is None:
                self._handler = self._cold_start()
            return self._handler

    def _cold_start(self) -> Handler:
        path = self.spec.handler_file
        if not path.is_file():
            raise InvocationError(f"{self.spec.logical_id}: handler file {path} does not exist")
        ensure_layer_on_path()
        if str(self.spec.code_dir) not in sys.path:
            sys.path.insert(0, str(self.spec.code_dir))  # Lambda's /var/task, before the layer
        module_spec = importlib.util.spec_from_file_location(self.module_name, path)
        if module_spec is None or module_spec.loader is None:
            raise InvocationError(f"{self.spec.logical_id}: cannot load {path}")
        module: ModuleType = importlib.util.module_from_spec(module_spec)
        sys.modules[self.module_name] = module  # dataclasses/pydantic look their module up by name
        try:
            module_spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[self.module_name]  # a failed init is retried on the next invocation
            raise
        handler = getattr(module, self.spec.handler_attribute, None)
        if not callable(handler):
            raise InvocationError(f"{self.spec.logical_id}: {path} has no callable {self.spec.handler_attribute}")
        return cast("Handler", handler)

    def invoke(self, event: object) -> JsonValue:
        """Call the handler with a copy of ``event``; returns its JSON-round-tripped result.

        The handler's own exceptions propagate unchanged (the caller decides what Lambda's caller
        would see).
        """
        try:
            payload = json.loads(json.dumps(event))
        except (TypeError, ValueError) as error:
            raise InvocationError(f"{self.spec.logical_id}: event is not JSON: {error}") from error
        handler = self.handler()
        context = LambdaContext(
            function_name=self.spec.logical_id,
            memory_limit_in_mb=self.spec.memory_size,
            invoked_function_arn=self.function_arn,
            log_group_name=f"/aws/lambda/{self.spec.logical_id}",
            log_stream_name=f"local/[$LATEST]{uuid.uuid4().hex}",
            deadline_monotonic=time.monotonic() + self.spec.timeout_seconds,
        )
        started = time.monotonic()
        result = handler(payload, context)
        elapsed = time.monotonic() - started
        if elapsed > self.spec.timeout_seconds:
            print(
                f"[invoker] {self.spec.logical_id} ran {elapsed:.1f}s, over its Timeout of "
                f"{self.spec.timeout_seconds:g}s: on Lambda this invocation would have timed out",
                file=sys.stderr,
            )
        try:
            returned: JsonValue = json.loads(json.dumps(result))
        except (TypeError, ValueError) as error:
            raise InvocationError(
                f"{self.spec.logical_id}: result is not JSON-serializable (Runtime.MarshalError): {error}"
            ) from error
        return returned


class Invoker:
    """The containers of every function of a template, created on first use."""

    def __init__(self, template: Template, *, account_id: str = LOCAL_ACCOUNT_ID, region: str | None = None) -> None:
        self.template = template
        self.account_id = account_id
        self.region = region or os.environ.get("AWS_DEFAULT_REGION", LOCAL_REGION)
        self._containers: dict[str, Container] = {}
        self._lock = threading.Lock()

    def container(self, function_id: str) -> Container:
        with self._lock:
            container = self._containers.get(function_id)
            if container is None:
                container = Container(
                    self.template.function(function_id), account_id=self.account_id, region=self.region
                )
                self._containers[function_id] = container
            return container

    def invoke(self, function_id: str, event: object) -> JsonValue:
        """Invoke ``function_id`` with ``event`` (synchronously, RequestResponse)."""
        return self.container(function_id).invoke(event)
