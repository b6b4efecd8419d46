"""The SAM template as the local runtime sees it: functions, HTTP routes, event rules and schedules.

``template.yaml`` uses CloudFormation's short intrinsic tags (``!Ref``, ``!Sub``, ``!GetAtt``, ``!If``,
…). ``load_yaml`` turns each into the long JSON form CloudFormation itself uses (``{"Ref": x}``,
``{"Fn::GetAtt": [resource, attribute]}``, ``{"Fn::Sub": …}``), so a YAML and a JSON template read the
same. Intrinsics are not evaluated in general; the few values the local runtime needs (a bus name
given as ``!Ref`` to a parameter or to the bus resource, an authorizer's ``!GetAtt X.Arn``) are
resolved against parameter defaults and resource names, and anything else is left out of the local view
(an environment variable whose value is ``!Ref DbSecretArn``, a parameter without default, is dropped:
locally the runtime supplies its own).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TEMPLATE = ROOT / "template.yaml"
ADMIN_AUTHORIZER = "AdminAuthorizer"

_FUNCTION_TYPE = "AWS::Serverless::Function"
_HTTP_API_TYPE = "AWS::Serverless::HttpApi"
_RULE_EVENT_TYPES = frozenset({"EventBridgeRule", "CloudWatchEvent"})
_SCHEDULE_EVENT_TYPES = frozenset({"ScheduleV2", "Schedule"})
_HTTP_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "ANY"})


class TemplateError(ValueError):
    """The template says something the local runtime cannot follow."""


# ---------------------------------------------------------------------------------------------------
# YAML with CloudFormation short tags
# ---------------------------------------------------------------------------------------------------


class CloudFormationLoader(yaml.SafeLoader):
    """A safe YAML loader that also reads ``!Ref``, ``!Sub``, ``!GetAtt`` and the other short tags."""


def _construct_intrinsic(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    elif isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node, deep=True)
    else:  # pragma: no cover - PyYAML has no other node kinds
        raise TemplateError(f"unexpected YAML node for !{tag_suffix}")
    if tag_suffix == "Ref":
        return {"Ref": value}
    if tag_suffix == "Condition":
        return {"Condition": value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        resource, _, attribute = value.partition(".")
        return {"Fn::GetAtt": [resource, attribute]}
    return {f"Fn::{tag_suffix}": value}


CloudFormationLoader.add_multi_constructor("!", _construct_intrinsic)


def load_yaml(path: Path) -> dict[str, Any]:
    """Parse a CloudFormation/SAM YAML file; short tags become their long JSON forms."""
    with path.open(encoding="utf-8") as stream:
        document = yaml.load(stream, Loader=CloudFormationLoader)  # noqa: S506 - a SafeLoader subclass
    if not isinstance(document, dict):
        raise TemplateError(f"{path}: not a CloudFormation template (top level is not a mapping)")
    return cast("dict[str, Any]", document)


# ---------------------------------------------------------------------------------------------------
# The local view
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    """One ``AWS::Serverless::Function``: where its code is and how Lambda would call it."""

    logical_id: str
    code_dir: Path
    handler_module: str
    handler_attribute: str
    memory_size: int = 128
    timeout_seconds: float = 3.0
    environment: Mapping[str, str] = field(default_factory=dict)
    """The function's own ``Environment.Variables`` that resolve locally (see ``Template``)."""

    @property
    def handler(self) -> str:
        return f"{self.handler_module}.{self.handler_attribute}"

    @property
    def handler_file(self) -> Path:
        return self.code_dir / (self.handler_module.replace(".", "/") + ".py")


@dataclass(frozen=True, slots=True)
class RouteSpec:
    """One HTTP API route (an ``HttpApi`` event of a function)."""

    method: str
    path: str
    function_id: str
    authorizer: str | None = None
    authorizer_function_id: str | None = None
    identity_headers: tuple[str, ...] = ()

    @property
    def route_key(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def uses_admin_authorizer(self) -> bool:
        return self.authorizer == ADMIN_AUTHORIZER

    @property
    def segments(self) -> tuple[str, ...]:
        return tuple(self.path.strip("/").split("/")) if self.path.strip("/") else ()


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """One EventBridge rule targeting a function (an ``EventBridgeRule`` event of a function)."""

    name: str
    function_id: str
    pattern: Mapping[str, Any]
    event_bus_name: str = "default"
    retry_attempts: int | None = None
    """``RetryPolicy.MaximumRetryAttempts``; None when the template leaves it to EventBridge."""
    maximum_event_age_seconds: int | None = None
    dead_letter_target: Any = None
    input: Any = None


@dataclass(frozen=True, slots=True)
class ScheduleSpec:
    """One scheduled invocation of a function (``ScheduleV2`` or ``Schedule`` event)."""

    name: str
    function_id: str
    expression: str
    kind: str
    enabled: bool = True
    retry_attempts: int | None = None
    input: str | None = None


@dataclass(frozen=True, slots=True)
class Template:
    """The parts of a SAM template the local runtime uses."""

    path: Path
    root: Path
    document: Mapping[str, Any]
    parameters: Mapping[str, str]
    """Default value of every parameter that has one."""
    global_environment: Mapping[str, str]
    """``Globals.Function.Environment.Variables`` that resolve locally."""
    functions: Mapping[str, FunctionSpec]
    routes: tuple[RouteSpec, ...]
    rules: tuple[RuleSpec, ...]
    schedules: tuple[ScheduleSpec, ...]

    @classmethod
    def load(cls, path: Path = DEFAULT_TEMPLATE) -> Template:
        return parse_template(load_yaml(path), path)

    def function(self, logical_id: str) -> FunctionSpec:
        try:
            return self.functions[logical_id]
        except KeyError:
            known = ", ".join(sorted(self.functions))
            raise TemplateError(f"no function {logical_id!r} in {self.path.name} (known: {known})") from None


def parse_template(document: Mapping[str, Any], path: Path) -> Template:
    """Build the local view of an already-parsed template found at ``path``."""
    root = path.resolve().parent
    parameters = _parameter_defaults(document)
    resources: Mapping[str, Any] = _mapping(document.get("Resources"), "Resources")
    function_globals = _mapping(_mapping(document.get("Globals", {}), "Globals").get("Function", {}), "")
    resolver = _Resolver(parameters, resources)
    global_environment = _plain_environment(function_globals.get("Environment"), resolver)

    functions: dict[str, FunctionSpec] = {}
    routes: list[RouteSpec] = []
    rules: list[RuleSpec] = []
    schedules: list[ScheduleSpec] = []
    for logical_id, resource in resources.items():
        if not isinstance(resource, dict) or resource.get("Type") != _FUNCTION_TYPE:
            continue
        properties = _mapping(resource.get("Properties", {}), f"{logical_id}.Properties")
        functions[logical_id] = _function_spec(logical_id, properties, function_globals, root, resolver)
        events = _mapping(properties.get("Events", {}), f"{logical_id}.Events")
        for event_name, event in events.items():
            event_map = _mapping(event, f"{logical_id}.Events.{event_name}")
            event_type = event_map.get("Type")
            event_properties = _mapping(event_map.get("Properties", {}), f"{logical_id}.{event_name}")
            if event_type == "HttpApi":
                routes.append(_route_spec(logical_id, event_properties, resources))
            elif event_type in _RULE_EVENT_TYPES:
                rules.append(_rule_spec(logical_id, event_name, event_properties, resolver))
            elif event_type in _SCHEDULE_EVENT_TYPES:
                schedules.append(_schedule_spec(logical_id, event_name, str(event_type), event_properties, resolver))
    return Template(
        path=path,
        root=root,
        document=document,
        parameters=parameters,
        global_environment=global_environment,
        functions=functions,
        routes=tuple(routes),
        rules=tuple(rules),
        schedules=tuple(schedules),
    )


def _mapping(value: object, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TemplateError(f"{where}: expected a mapping, got {type(value).__name__}")
    return cast("dict[str, Any]", value)


def _parameter_defaults(document: Mapping[str, Any]) -> dict[str, str]:
    defaults: dict[str, str] = {}
    for name, parameter in _mapping(document.get("Parameters", {}), "Parameters").items():
        if isinstance(parameter, dict) and "Default" in parameter:
            defaults[name] = _scalar_string(parameter["Default"])
    return defaults


def _scalar_string(value: object) -> str:
    """A scalar as CloudFormation passes it to Lambda: booleans lower-case, numbers as written."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class _Resolver:
    """Resolves the few intrinsics the local runtime needs, from parameter defaults and resources."""

    def __init__(self, parameters: Mapping[str, str], resources: Mapping[str, Any]) -> None:
        self._parameters = parameters
        self._resources = resources

    def string(self, value: object) -> str | None:
        """The value as a string, or None when it depends on something only AWS knows."""
        if value is None or isinstance(value, dict | list):
            if isinstance(value, dict) and "Ref" in value and len(value) == 1:
                return self._ref(value["Ref"])
            if isinstance(value, dict) and "Fn::Sub" in value and isinstance(value["Fn::Sub"], str):
                return self._sub(value["Fn::Sub"])
            return None
        return _scalar_string(value)

    def _ref(self, name: object) -> str | None:
        if not isinstance(name, str):
            return None
        if name in self._parameters:
            return self._parameters[name]
        resource = self._resources.get(name)
        if isinstance(resource, dict) and resource.get("Type") == "AWS::Events::EventBus":
            return self.string(_mapping(resource.get("Properties", {}), name).get("Name"))
        return None

    def _sub(self, text: str) -> str | None:
        unresolved = False

        def replace(match: re.Match[str]) -> str:
            nonlocal unresolved
            value = self._ref(match["name"])
            if value is None:
                unresolved = True
                return ""
            return value

        result = re.sub(r"\$\{(?P<name>[A-Za-z0-9:._-]+)\}", replace, text)
        return None if unresolved else result


def _plain_environment(environment: object, resolver: _Resolver) -> dict[str, str]:
    variables = _mapping(_mapping(environment, "Environment").get("Variables", {}), "Variables")
    plain: dict[str, str] = {}
    for name, value in variables.items():
        # A !Ref to a parameter with a default resolves; anything only AWS can resolve (a secret's
        # ARN without default, an !If on a condition) is left out: the local runtime supplies its own.
        resolved = resolver.string(value)
        if resolved is not None:
            plain[name] = resolved
    return plain


def _function_spec(
    logical_id: str,
    properties: Mapping[str, Any],
    function_globals: Mapping[str, Any],
    root: Path,
    resolver: _Resolver,
) -> FunctionSpec:
    code_uri = properties.get("CodeUri", function_globals.get("CodeUri"))
    handler = properties.get("Handler", function_globals.get("Handler"))
    if not isinstance(code_uri, str) or not isinstance(handler, str) or "." not in handler:
        raise TemplateError(f"{logical_id}: needs a local CodeUri and a Handler of the form module.function")
    module, _, attribute = handler.rpartition(".")
    memory = properties.get("MemorySize", function_globals.get("MemorySize", 128))
    timeout = properties.get("Timeout", function_globals.get("Timeout", 3))
    return FunctionSpec(
        logical_id=logical_id,
        code_dir=(root / code_uri).resolve(),
        handler_module=module,
        handler_attribute=attribute,
        memory_size=int(memory) if isinstance(memory, int | str) else 128,
        timeout_seconds=float(timeout) if isinstance(timeout, int | float | str) else 3.0,
        environment=_plain_environment(properties.get("Environment"), resolver),
    )


def _route_spec(function_id: str, properties: Mapping[str, Any], resources: Mapping[str, Any]) -> RouteSpec:
    method = str(properties.get("Method", "ANY")).upper()
    if method == "*":
        method = "ANY"
    path = properties.get("Path")
    if method not in _HTTP_METHODS or not isinstance(path, str) or not path.startswith("/"):
        raise TemplateError(f"{function_id}: HttpApi event needs a Method and a Path starting with '/'")
    api_auth = _http_api_auth(properties.get("ApiId"), resources)
    route_auth = _mapping(properties.get("Auth", {}), f"{function_id}.Auth")
    authorizer_name = route_auth.get("Authorizer", api_auth.get("DefaultAuthorizer"))
    if not isinstance(authorizer_name, str) or authorizer_name.upper() == "NONE":
        return RouteSpec(method=method, path=path, function_id=function_id)
    authorizers = _mapping(api_auth.get("Authorizers", {}), "Auth.Authorizers")
    authorizer = _mapping(authorizers.get(authorizer_name), f"Auth.Authorizers.{authorizer_name}")
    if not authorizer:
        raise TemplateError(f"{function_id}: {method} {path} names an unknown authorizer {authorizer_name}")
    identity = _mapping(authorizer.get("Identity", {}), f"{authorizer_name}.Identity")
    headers = identity.get("Headers", ["Authorization"])
    return RouteSpec(
        method=method,
        path=path,
        function_id=function_id,
        authorizer=authorizer_name,
        authorizer_function_id=_function_of_arn(authorizer.get("FunctionArn")),
        identity_headers=tuple(str(header) for header in headers) if isinstance(headers, list) else (),
    )


def _http_api_auth(api_id: object, resources: Mapping[str, Any]) -> dict[str, Any]:
    """``Auth`` of the HttpApi resource the event names (or of the only one, as SAM's implicit API)."""
    apis = {
        name: resource
        for name, resource in resources.items()
        if isinstance(resource, dict) and resource.get("Type") == _HTTP_API_TYPE
    }
    name = api_id.get("Ref") if isinstance(api_id, dict) else None
    if name is None and len(apis) == 1:
        (name,) = apis
    api = apis.get(name) if isinstance(name, str) else None
    if api is None:
        return {}
    return _mapping(_mapping(api.get("Properties", {}), str(name)).get("Auth", {}), f"{name}.Auth")


def _function_of_arn(arn: object) -> str | None:
    """The logical id of ``!GetAtt Function.Arn``, ``!Ref Function`` or ``!Ref Function.Alias`` (SAM's
    reference to the function's ``AutoPublishAlias``)."""
    if isinstance(arn, dict):
        get_att = arn.get("Fn::GetAtt")
        if isinstance(get_att, list) and get_att:
            return str(get_att[0])
        if isinstance(arn.get("Ref"), str):
            return str(arn["Ref"]).removesuffix(".Alias")
    return None


def _retry_attempts(properties: Mapping[str, Any]) -> int | None:
    policy = properties.get("RetryPolicy")
    if isinstance(policy, dict) and "MaximumRetryAttempts" in policy:
        return int(policy["MaximumRetryAttempts"])
    return None


def _rule_spec(function_id: str, event_name: str, properties: Mapping[str, Any], resolver: _Resolver) -> RuleSpec:
    pattern = properties.get("Pattern")
    if not isinstance(pattern, dict):
        raise TemplateError(f"{function_id}.{event_name}: an EventBridge rule needs a Pattern mapping")
    bus = properties.get("EventBusName")
    bus_name = resolver.string(bus) if bus is not None else "default"
    if bus_name is None:
        raise TemplateError(f"{function_id}.{event_name}: cannot resolve EventBusName {bus!r} locally")
    policy = properties.get("RetryPolicy")
    max_age = policy.get("MaximumEventAgeInSeconds") if isinstance(policy, dict) else None
    return RuleSpec(
        name=f"{function_id}.{event_name}",
        function_id=function_id,
        pattern=pattern,
        event_bus_name=_bus_name_of(bus_name),
        retry_attempts=_retry_attempts(properties),
        maximum_event_age_seconds=int(max_age) if max_age is not None else None,
        dead_letter_target=properties.get("DeadLetterConfig"),
        input=properties.get("Input"),
    )


def _bus_name_of(name_or_arn: str) -> str:
    """``arn:…:event-bus/such-market`` → ``such-market``; a name stays a name."""
    return name_or_arn.rsplit("event-bus/", 1)[-1] if name_or_arn.startswith("arn:") else name_or_arn


def _schedule_spec(
    function_id: str, event_name: str, kind: str, properties: Mapping[str, Any], resolver: _Resolver
) -> ScheduleSpec:
    # A !Ref to a parameter (the data-lifecycle job's period) runs on the parameter's default.
    expression = resolver.string(properties.get("ScheduleExpression") or properties.get("Schedule"))
    if not isinstance(expression, str):
        raise TemplateError(f"{function_id}.{event_name}: a schedule needs a ScheduleExpression")
    if kind == "ScheduleV2":
        enabled = str(properties.get("State", "ENABLED")).upper() != "DISABLED"
    else:
        enabled = properties.get("Enabled", True) is not False and properties.get("State") != "DISABLED"
    raw_input = properties.get("Input")
    name = properties.get("Name")
    return ScheduleSpec(
        name=name if isinstance(name, str) else f"{function_id}.{event_name}",
        function_id=function_id,
        expression=expression.strip(),
        kind=kind,
        enabled=enabled,
        retry_attempts=_retry_attempts(properties),
        input=raw_input if isinstance(raw_input, str) else None,
    )
