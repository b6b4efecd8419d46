"""The static checks of the rehearsal, on the translated template, under each scenario (``evaluate``).

Per function (``AWS::Lambda::Function`` and its role):

- every secret its settings read (``needs``) is granted: ``secretsmanager:GetSecretValue`` on the value the
  template gives the variable (and ``BatchGetSecretValue``, the extension-less path of ``such_market.secrets``);
- every bus it publishes to is created by the template and granted (``events:PutEvents``); every queue it
  reads is created by the template and granted some ``sqs:`` action on it; every asynchronous-invocation
  destination (``EventInvokeConfig``) is granted, and every queue an event source mapping feeds it from;
- in a VPC, its security groups may reach each database endpoint (RDS Proxy, else the cluster/instance) on
  its port and each cache on 6379, where the template creates those security groups (given ones are the
  deployer's: not checkable here); the proxy's groups may reach the cluster's;
- when the template manages log groups, the function has one; every log group has a retention.

Per rule and schedule: it listens on a bus of the template (or the default bus), its target is a function
(alias or version) of the template, the invoke permission exists (rules) or the scheduler's role may invoke
it (schedules), and a dead-letter queue lets the rule send. Every route and authorizer of an HTTP API calls
a function of the template that API Gateway may invoke.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from local.rehearsal.evaluate import ACCOUNT, PARTITION, REGION, Evaluator, Scenario, scenarios
from local.rehearsal.needs import CodeNeeds, code_needs
from local.rehearsal.policies import Permissions, _as_list, role_of, role_permissions
from local.rehearsal.translate import code_path

DATABASE_PORT = 5432
CACHE_PORT = 6379
QUEUE_SOURCE_ACTIONS = ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes")
QUEUE_ACCESS = ("sqs:SendMessage", "sqs:ReceiveMessage", "sqs:GetQueueAttributes", "sqs:DeleteMessage")
_DESTINATION_ACTIONS = {"sqs": "sqs:SendMessage", "sns": "sns:Publish", "events": "events:PutEvents"}
_DATABASE_ENDPOINTS = ("AWS::RDS::DBProxy",)
_DATABASE_SERVERS = ("AWS::RDS::DBCluster", "AWS::RDS::DBInstance")
_CACHES = ("AWS::ElastiCache::ServerlessCache", "AWS::ElastiCache::ReplicationGroup", "AWS::ElastiCache::CacheCluster")
_HTTP_METHODS = frozenset(
    {"get", "post", "put", "patch", "delete", "head", "options", "x-amazon-apigateway-any-method"}
)
_SECURITY_GROUP_PROPERTIES = ("VpcSecurityGroupIds", "SecurityGroupIds", "VpcSecurityGroups")


@dataclass(frozen=True, slots=True, order=True)
class Finding:
    """One thing the template gets wrong: who, what, and which resource."""

    scenario: str
    subject: str
    problem: str
    resource: str

    def __str__(self) -> str:
        return f"[{self.scenario}] {self.subject}: {self.problem}: {self.resource}"


@dataclass(frozen=True, slots=True)
class Function:
    """A translated function, its role and what its code needs."""

    logical_id: str
    role_id: str
    needs: CodeNeeds


def functions(template: Mapping[str, Any]) -> list[Function]:
    """The template's functions with local code, their roles and needs."""
    found = []
    for logical_id, resource in template.get("Resources", {}).items():
        if resource["Type"] != "AWS::Lambda::Function":
            continue
        properties = resource["Properties"]
        path = code_path(resource)
        role = properties.get("Role", {})
        role_id = role.get("Fn::GetAtt", [None])[0] if isinstance(role, dict) else None
        if path is None or role_id is None:
            continue  # inline code or a role made elsewhere: not ours to derive
        found.append(Function(logical_id, role_id, code_needs(path, properties["Handler"])))
    return found


def check_template(template: Mapping[str, Any], *, only: Iterable[Scenario] | None = None) -> list[Finding]:
    """Every finding of every check under every scenario (none: the template's wiring is sound)."""
    findings: set[Finding] = set()
    template_functions = functions(template)
    for scenario in only if only is not None else scenarios(template, every_choice=True):
        evaluator = Evaluator(template, scenario)
        for function in template_functions:
            if evaluator.exists(function.logical_id):
                findings.update(_function_findings(evaluator, function))
        findings.update(_target_findings(evaluator))
        findings.update(_proxy_findings(evaluator))
        findings.update(_route_findings(evaluator))
        findings.update(_log_group_findings(evaluator))
    return sorted(findings)


def _environment(evaluator: Evaluator, logical_id: str) -> dict[str, str]:
    variables = evaluator.properties(logical_id).get("Environment", {}).get("Variables", {})
    return {name: str(value) for name, value in variables.items() if str(value) != ""}


def bus_arn(name_or_arn: str) -> str:
    if name_or_arn.startswith("arn:"):
        return name_or_arn
    return f"arn:{PARTITION}:events:{REGION}:{ACCOUNT}:event-bus/{name_or_arn}"


def secret_resource(reference: str) -> tuple[str, str]:
    """The action and resource that reading a secret reference needs (Secrets Manager, or SSM by name/ARN)."""
    if ":secretsmanager:" in reference:
        return "secretsmanager:GetSecretValue", reference
    if reference.startswith("arn:"):
        return "ssm:GetParameters", reference
    return "ssm:GetParameters", f"arn:{PARTITION}:ssm:{REGION}:{ACCOUNT}:parameter{reference}"


def _of_type(evaluator: Evaluator, types: tuple[str, ...]) -> Iterator[str]:
    return (
        logical_id
        for logical_id, resource in evaluator.resources.items()
        if resource["Type"] in types and evaluator.exists(logical_id)
    )


def _function_findings(evaluator: Evaluator, function: Function) -> Iterator[Finding]:
    scenario, subject = evaluator.scenario.name, function.logical_id
    permissions = role_permissions(evaluator, function.role_id)
    environment = _environment(evaluator, function.logical_id)
    references = [environment[name] for name in sorted(function.needs.secret_variables) if name in environment]
    for reference in references:
        action, resource = secret_resource(reference)
        if not permissions.allows(action, resource):
            yield Finding(scenario, subject, f"its settings read a secret it may not ({action})", resource)
    if references and not permissions.allows("secretsmanager:BatchGetSecretValue", "*"):
        yield Finding(scenario, subject, "reads secrets without the extension but may not", "BatchGetSecretValue")
    buses = {
        evaluator.value(evaluator.properties(bus).get("Name"))
        for bus in _of_type(evaluator, ("AWS::Events::EventBus",))
    }
    for name in sorted(function.needs.bus_variables & environment.keys()):
        bus = environment[name]
        if bus not in buses | {"default"} and bus_arn(bus) not in {bus_arn(str(known)) for known in buses}:
            yield Finding(scenario, subject, f"publishes to a bus the template does not create ({name})", bus)
        if not permissions.allows("events:PutEvents", bus_arn(bus)):
            yield Finding(scenario, subject, "publishes to a bus it may not (events:PutEvents)", bus_arn(bus))
    queues = {evaluator.attribute(queue, "Ref"): queue for queue in _of_type(evaluator, ("AWS::SQS::Queue",))}
    for name in sorted(function.needs.queue_variables & environment.keys()):
        queue = queues.get(environment[name])
        if queue is None:
            yield Finding(scenario, subject, f"reads a queue the template does not create ({name})", environment[name])
        elif not any(permissions.allows(action, evaluator.attribute(queue, "Arn")) for action in QUEUE_ACCESS):
            yield Finding(scenario, subject, "reads a queue it may not (sqs:*)", evaluator.attribute(queue, "Arn"))
    yield from _destination_findings(evaluator, function, permissions)
    yield from _event_source_findings(evaluator, function, permissions)
    yield from _network_findings(evaluator, function)


def _destination_findings(evaluator: Evaluator, function: Function, permissions: Permissions) -> Iterator[Finding]:
    name = evaluator.attribute(function.logical_id, "Ref")
    for config in _of_type(evaluator, ("AWS::Lambda::EventInvokeConfig",)):
        properties = evaluator.properties(config)
        if properties.get("FunctionName") not in (name, evaluator.attribute(function.logical_id, "Arn")):
            continue
        for outcome, destination in properties.get("DestinationConfig", {}).items():
            arn = str(destination.get("Destination", ""))
            service = arn.split(":")[2] if arn.count(":") >= 5 else ""
            action = _DESTINATION_ACTIONS.get(service, "lambda:InvokeFunction")
            if not permissions.allows(action, arn):
                problem = f"its {outcome} destination is not granted ({action})"
                yield Finding(evaluator.scenario.name, function.logical_id, problem, arn)


def _event_source_findings(evaluator: Evaluator, function: Function, permissions: Permissions) -> Iterator[Finding]:
    """A queue the function is fed from (an event source mapping) is read by Lambda with its role."""
    names = {evaluator.attribute(function.logical_id, "Ref"), evaluator.attribute(function.logical_id, "Arn")}
    for mapping in _of_type(evaluator, ("AWS::Lambda::EventSourceMapping",)):
        properties = evaluator.properties(mapping)
        source = str(properties.get("EventSourceArn", ""))
        function_name = str(properties.get("FunctionName"))
        if ":sqs:" not in source or not (function_name in names or function_name.rsplit(":", 1)[0] in names):
            continue
        for action in QUEUE_SOURCE_ACTIONS:
            if not permissions.allows(action, source):
                yield Finding(
                    evaluator.scenario.name, function.logical_id, f"its queue source is not granted ({action})", source
                )


def _security_groups(evaluator: Evaluator, logical_id: str) -> set[str]:
    properties = evaluator.properties(logical_id)
    return {
        str(group)
        for key in _SECURITY_GROUP_PROPERTIES
        for group in _as_list(properties.get(key) or (properties.get("VpcConfig") or {}).get(key))
    }


def _ingress_rules(evaluator: Evaluator) -> list[dict[str, Any]]:
    rules = []
    for group in _of_type(evaluator, ("AWS::EC2::SecurityGroup",)):
        for rule in _as_list(evaluator.properties(group).get("SecurityGroupIngress")):
            rules.append({**rule, "GroupId": evaluator.attribute(group, "GroupId")})
    rules.extend(evaluator.properties(rule) for rule in _of_type(evaluator, ("AWS::EC2::SecurityGroupIngress",)))
    return rules


def _admits(rule: Mapping[str, Any], group: str, sources: set[str], port: int) -> bool:
    if str(rule.get("GroupId")) != group or str(rule.get("SourceSecurityGroupId")) not in sources:
        return False
    if str(rule.get("IpProtocol")) == "-1":
        return True
    return str(rule.get("IpProtocol")) == "tcp" and int(rule.get("FromPort", -1)) <= port <= int(rule.get("ToPort", -1))


def _network_findings(evaluator: Evaluator, function: Function) -> Iterator[Finding]:
    sources = _security_groups(evaluator, function.logical_id)
    if not sources:
        return
    created = {evaluator.attribute(group, "GroupId") for group in _of_type(evaluator, ("AWS::EC2::SecurityGroup",))}
    databases = list(_of_type(evaluator, _DATABASE_ENDPOINTS)) or list(_of_type(evaluator, _DATABASE_SERVERS))
    endpoints = [(database, DATABASE_PORT) for database in databases]
    endpoints += [(cache, CACHE_PORT) for cache in _of_type(evaluator, _CACHES)]
    rules = _ingress_rules(evaluator)
    for endpoint, default_port in endpoints:
        port = int(evaluator.properties(endpoint).get("Port", default_port))
        groups = _security_groups(evaluator, endpoint)
        if not groups or not groups <= created:
            continue  # the deployer's security groups: their rules are not in the template
        if not any(_admits(rule, group, sources, port) for rule in rules for group in groups):
            problem = f"cannot reach {endpoint} on {port} (no ingress from its security groups)"
            yield Finding(evaluator.scenario.name, function.logical_id, problem, ",".join(sorted(groups)))


def _proxy_findings(evaluator: Evaluator) -> Iterator[Finding]:
    """The RDS Proxy must reach the database it fronts (where the template creates both groups)."""
    created = {evaluator.attribute(group, "GroupId") for group in _of_type(evaluator, ("AWS::EC2::SecurityGroup",))}
    rules = _ingress_rules(evaluator)
    for proxy in _of_type(evaluator, _DATABASE_ENDPOINTS):
        sources = _security_groups(evaluator, proxy)
        for server in _of_type(evaluator, _DATABASE_SERVERS):
            port = int(evaluator.properties(server).get("Port", DATABASE_PORT))
            groups = _security_groups(evaluator, server)
            if not sources or not groups or not (sources | groups) <= created:
                continue
            if not any(_admits(rule, group, sources, port) for rule in rules for group in groups):
                problem = f"cannot reach {server} on {port} (no ingress from its security groups)"
                yield Finding(evaluator.scenario.name, proxy, problem, ",".join(sorted(groups)))


def _invocable(evaluator: Evaluator) -> dict[str, str]:
    """ARN of every function, alias and version of the template → its function's logical id."""
    arns = {}
    for function in _of_type(evaluator, ("AWS::Lambda::Function",)):
        arns[evaluator.attribute(function, "Arn")] = function
    for qualified in _of_type(evaluator, ("AWS::Lambda::Alias", "AWS::Lambda::Version")):
        arns[evaluator.attribute(qualified, "Ref")] = qualified
    return arns


def _target_findings(evaluator: Evaluator) -> Iterator[Finding]:
    scenario, invocable = evaluator.scenario.name, _invocable(evaluator)
    permissions = [evaluator.properties(permission) for permission in _of_type(evaluator, ("AWS::Lambda::Permission",))]
    queue_policies = [evaluator.properties(policy) for policy in _of_type(evaluator, ("AWS::SQS::QueuePolicy",))]
    buses = {str(evaluator.properties(bus).get("Name")) for bus in _of_type(evaluator, ("AWS::Events::EventBus",))}
    for rule in _of_type(evaluator, ("AWS::Events::Rule",)):
        rule_arn = evaluator.attribute(rule, "Arn")
        bus = str(evaluator.properties(rule).get("EventBusName", "default"))
        if bus_arn(bus) not in {bus_arn(known) for known in buses | {"default"}}:
            yield Finding(scenario, rule, "listens on a bus the template does not create", bus)
        for target in evaluator.properties(rule).get("Targets", []):
            arn = str(target.get("Arn"))
            if arn not in invocable:
                yield Finding(scenario, rule, "targets no function of the template", arn)
            elif not any(
                permission.get("FunctionName") in (arn, evaluator.attribute(invocable[arn], "Ref"))
                and permission.get("Principal") == "events.amazonaws.com"
                and permission.get("SourceArn", rule_arn) == rule_arn
                for permission in permissions
            ):
                yield Finding(scenario, rule, "may not invoke its target (no lambda:InvokeFunction permission)", arn)
            dead_letters = str((target.get("DeadLetterConfig") or {}).get("Arn", ""))
            if dead_letters and not _queue_admits_rule(evaluator, queue_policies, dead_letters, rule_arn):
                yield Finding(scenario, rule, "may not send to its dead-letter queue", dead_letters)
    for schedule in _of_type(evaluator, ("AWS::Scheduler::Schedule",)):
        target = evaluator.properties(schedule).get("Target", {})
        arn, role = str(target.get("Arn")), role_of(evaluator, str(target.get("RoleArn")))
        if arn not in invocable:
            yield Finding(scenario, schedule, "targets no function of the template", arn)
        elif role is None or not role_permissions(evaluator, role).allows("lambda:InvokeFunction", arn):
            yield Finding(scenario, schedule, "its role may not invoke its target", arn)


def _lambda_uris(node: Any, where: str) -> Iterator[tuple[str, str]]:  # noqa: ANN401 - any JSON value
    """``(where, function ARN)`` of every Lambda invocation URI in an evaluated OpenAPI body."""
    if isinstance(node, dict):
        for key, item in node.items():
            yield from _lambda_uris(item, f"{where} {key}" if key.startswith("/") or key in _HTTP_METHODS else where)
    elif isinstance(node, list):
        for item in node:
            yield from _lambda_uris(item, where)
    elif isinstance(node, str) and ":lambda:path/2015-03-31/functions/" in node:
        yield where.strip(), node.split("/functions/", 1)[1].rsplit("/invocations", 1)[0]


def _route_findings(evaluator: Evaluator) -> Iterator[Finding]:
    """Every route and authorizer of an HTTP API calls a function of the template that API Gateway may invoke."""
    scenario, invocable = evaluator.scenario.name, _invocable(evaluator)
    permissions = [evaluator.properties(permission) for permission in _of_type(evaluator, ("AWS::Lambda::Permission",))]
    for api in _of_type(evaluator, ("AWS::ApiGatewayV2::Api",)):
        api_id = evaluator.attribute(api, "Ref")
        for where, arn in _lambda_uris(evaluator.properties(api).get("Body", {}), ""):
            if arn not in invocable:
                yield Finding(scenario, api, f"{where or 'an authorizer'} calls no function of the template", arn)
            elif not any(
                permission.get("FunctionName") in (arn, evaluator.attribute(invocable[arn], "Ref"))
                and permission.get("Principal") == "apigateway.amazonaws.com"
                and f":{api_id}/" in str(permission.get("SourceArn", f":{api_id}/"))
                for permission in permissions
            ):
                yield Finding(scenario, api, f"{where or 'an authorizer'} may not invoke its function", arn)


def _queue_admits_rule(evaluator: Evaluator, policies: list[dict[str, Any]], queue_arn: str, rule_arn: str) -> bool:
    queues = {
        evaluator.attribute(queue, "Arn"): evaluator.attribute(queue, "Ref")
        for queue in _of_type(evaluator, ("AWS::SQS::Queue",))
    }
    if queue_arn not in queues:
        return False
    for policy in policies:
        if queues[queue_arn] not in [str(queue) for queue in _as_list(policy.get("Queues"))]:
            continue
        for statement in _as_list(policy.get("PolicyDocument", {}).get("Statement")):
            principal = statement.get("Principal", {})
            services = _as_list(principal.get("Service") if isinstance(principal, dict) else principal)
            if statement.get("Effect") != "Allow" or not ({"events.amazonaws.com", "*"} & set(services)):
                continue
            if not Permissions((statement,)).allows("sqs:SendMessage", queue_arn):
                continue
            sources = [
                str(arn)
                for test in (statement.get("Condition") or {}).values()
                for arn in _as_list(test.get("aws:SourceArn"))
            ]
            if not sources or rule_arn in sources:
                return True
    return False


def _log_group_findings(evaluator: Evaluator) -> Iterator[Finding]:
    scenario = evaluator.scenario.name
    groups = {
        str(evaluator.properties(group).get("LogGroupName", evaluator.attribute(group, "Ref"))): group
        for group in _of_type(evaluator, ("AWS::Logs::LogGroup",))
    }
    for name, group in groups.items():
        if "RetentionInDays" not in evaluator.properties(group):
            yield Finding(scenario, group, "keeps its logs forever (no RetentionInDays)", name)
    if not groups:
        return  # the template leaves every log group to Lambda: nothing to compare with
    for function in _of_type(evaluator, ("AWS::Lambda::Function",)):
        properties = evaluator.properties(function)
        name = str(
            (properties.get("LoggingConfig") or {}).get("LogGroup")
            or f"/aws/lambda/{evaluator.attribute(function, 'Ref')}"
        )
        if name not in groups:
            yield Finding(scenario, function, "logs to a group the template does not manage (no retention)", name)


def check(template_path: Path) -> list[Finding]:
    """The static checks of ``template_path`` (translated first)."""
    from local.rehearsal.translate import transformed_template

    return check_template(transformed_template(template_path))
