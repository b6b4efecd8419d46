"""A translated template's values for one scenario: parameters given, conditions decided, intrinsics evaluated.

A ``Scenario`` is one set of parameter values. ``scenarios(template)`` gives the two that matter to the
checks: every optional parameter left at its default (the stack creates what it may create), and every
optional parameter given a value (bring your own: a secret ARN, a security group, a host). Parameters
without a default get the same made-up value in both. A made-up value is chosen by the parameter's type,
name ending and ``NoEcho``, and must satisfy its ``AllowedPattern``/``AllowedValues`` (a template whose
patterns refuse all of them is reported, not guessed around); a scenario the template's ``Rules`` refuse
is never run (``refused_by_rules``).

``Evaluator.value`` evaluates ``Ref``, ``Fn::GetAtt``, ``Fn::Sub``, ``Fn::Join``, ``Fn::If``,
``Fn::Select``, ``Fn::Split``, ``Fn::FindInMap``, ``Fn::GetAZs`` and the condition functions; a value under
``AWS::NoValue`` disappears from its mapping or list. What a resource's ``Ref``/``GetAtt`` returns is the
physical identity CloudFormation would give it (an ARN, a URL, a name), made up from its logical id and
properties, or given by whoever created it (``physical``: the moto deployment passes moto's own ARNs).
"""

from __future__ import annotations

import ipaddress
import itertools
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

REGION = "us-east-1"
ACCOUNT = "123456789012"
PARTITION = "aws"
_NO_VALUE = object()


class EvaluationError(ValueError):
    """The template uses something this evaluator does not know (named in the message)."""


@dataclass(frozen=True, slots=True)
class Scenario:
    """One deployment's parameter values (strings, as CloudFormation passes them)."""

    name: str
    parameters: Mapping[str, str]


def made_up_value(name: str, declaration: Mapping[str, Any], *, optional_given: bool) -> str:
    """A value of parameter ``name``: its default, unless it has none or (``optional_given``) its default is
    blank; then a made-up one of its type that its constraints accept."""
    default = declaration.get("Default")
    if default is not None and not (optional_given and str(default) == ""):
        return str(default)
    kind = str(declaration.get("Type", "String"))
    if allowed := declaration.get("AllowedValues"):
        return str(next((value for value in allowed if str(value) != ""), allowed[0]))
    if kind == "Number":
        return str(declaration.get("MinValue", 1))
    candidates = _candidates(name, kind, no_echo=str(declaration.get("NoEcho", "")).lower() == "true")
    pattern = declaration.get("AllowedPattern")
    shortest, longest = int(declaration.get("MinLength", 0)), int(declaration.get("MaxLength", 4096))
    for candidate in candidates:
        if (pattern is None or re.fullmatch(str(pattern), candidate)) and shortest <= len(candidate) <= longest:
            return candidate
    raise EvaluationError(f"parameter {name}: no made-up value fits its AllowedPattern {pattern!r} and lengths")


# What a name ending says its value is (the first candidates tried; the pattern has the last word)
_NAME_HINTS = (("Arn", "arn"), ("Endpoint", "host"), ("Host", "host"), ("Url", "url"), ("Email", "email"))


def _candidates(name: str, kind: str, *, no_echo: bool = False) -> list[str]:
    slug = re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()
    hex_id = f"{zlib.crc32(name.encode()):08x}0abcdef01"  # deterministic: 17 hex digits per name
    ids = {
        "subnets": f"subnet-{hex_id},subnet-{hex_id[::-1]}",
        "subnet": f"subnet-{hex_id}",
        "groups": f"sg-{hex_id},sg-{hex_id[::-1]}",
        "group": f"sg-{hex_id}",
        "vpc": f"vpc-{hex_id}",
    }
    by_type = {
        "List<AWS::EC2::Subnet::Id>": [ids["subnets"]],
        "AWS::EC2::Subnet::Id": [ids["subnet"]],
        "List<AWS::EC2::SecurityGroup::Id>": [ids["groups"]],
        "AWS::EC2::SecurityGroup::Id": [ids["group"]],
        "AWS::EC2::VPC::Id": [ids["vpc"]],
        "CommaDelimitedList": [slug],
    }
    if kind in by_type:
        return by_type[kind]
    kinds = {
        "arn": [
            f"arn:{PARTITION}:secretsmanager:{REGION}:{ACCOUNT}:secret:rehearsal/{slug}-AbCdEf",
            f"arn:{PARTITION}:lambda:{REGION}:{ACCOUNT}:layer:rehearsal-{slug}:1",
            f"arn:{PARTITION}:iam::{ACCOUNT}:role/rehearsal-{slug}",
        ],
        "host": [f"{slug}.rehearsal.example.com"],
        "url": [f"https://{slug}.rehearsal.example.com"],
        "email": [f"rehearsal-{slug}@example.com"],
    }
    # a NoEcho parameter is a secret's value itself (an API key): a token, not a reference
    hinted = ["token"] if no_echo else [hint for ending, hint in _NAME_HINTS if name.endswith(ending)]
    kinds["token"] = [f"rehearsal-{slug}-value"]
    first = [candidate for hint in hinted for candidate in kinds[hint]]
    rest = [candidate for candidates in kinds.values() for candidate in candidates]
    # an EC2 id (or a comma-separated list of them) in a String parameter is recognised by its pattern
    return first + rest + [ids["vpc"], ids["subnets"], ids["groups"], f"rehearsal-{slug}", "none"]


def refused_by_rules(template: Mapping[str, Any], parameters: Mapping[str, str]) -> list[str]:
    """The ``AssertDescription`` of every template ``Rules`` assertion that ``parameters`` break
    (CloudFormation refuses such a stack before creating anything)."""
    evaluator = Evaluator(template, Scenario("rules", parameters))
    refused = []
    for name, rule in template.get("Rules", {}).items():
        if "RuleCondition" in rule and not evaluator.value(rule["RuleCondition"]):
            continue
        for assertion in rule.get("Assertions", []):
            if not evaluator.value(assertion["Assert"]):
                refused.append(f"{name}: {assertion.get('AssertDescription', 'refused')}")
    return refused


def scenarios(template: Mapping[str, Any], *, every_choice: bool = False) -> list[Scenario]:
    """The scenarios the checks run under: optional parameters at their defaults (the stack creates what it
    may create), and all given (bring your own). With ``every_choice``, also: each optional parameter given
    alone (from the defaults) and each left blank alone (from everything given), and each other
    ``AllowedValues`` of each parameter a condition or rule reads (from the defaults, else from everything
    given), so that every condition is seen both ways. Only combinations the template's ``Rules`` accept
    are kept (CloudFormation refuses the others); the two main ones must be accepted."""
    parameters = template.get("Parameters", {})
    main = [
        Scenario(
            name,
            {key: made_up_value(key, declaration, optional_given=given) for key, declaration in parameters.items()},
        )
        for name, given in (("defaults", False), ("everything given", True))
    ]
    for scenario in main:
        if refused := refused_by_rules(template, scenario.parameters):
            raise EvaluationError(f"the template's Rules refuse the {scenario.name} scenario: {refused}")
    if not every_choice:
        return main
    defaults, given = main[0].parameters, main[1].parameters
    optional = [key for key in parameters if defaults[key] != given[key]]
    candidates = [Scenario(f"{key} given alone", {**defaults, key: given[key]}) for key in optional]
    candidates += [Scenario(f"{key} left blank", {**given, key: defaults[key]}) for key in optional]
    deciding = _referenced(template.get("Conditions", {})) | _referenced(template.get("Rules", {}))
    for key, declaration in parameters.items():
        if key not in deciding:
            continue  # a choice no condition or rule reads (LogRetentionDays) is passed through, not branched on
        for choice in map(str, declaration.get("AllowedValues", [])):
            bases = [base for base in (defaults, given) if choice != base[key]]
            accepted = [base for base in bases if not refused_by_rules(template, {**base, key: choice})]
            if len(bases) == len((defaults, given)) and accepted:  # a choice neither main scenario makes
                candidates.append(Scenario(f"{key}={choice}", {**accepted[0], key: choice}))
    seen = {tuple(sorted(scenario.parameters.items())) for scenario in main}
    kept = []
    for scenario in candidates:
        identity = tuple(sorted(scenario.parameters.items()))
        if identity not in seen and not refused_by_rules(template, scenario.parameters):
            seen.add(identity)
            kept.append(scenario)
    return main + kept


def _referenced(node: Any) -> set[str]:  # noqa: ANN401 - any JSON value
    """The names every ``Ref`` in ``node`` names."""
    if isinstance(node, list):
        return {name for item in node for name in _referenced(item)}
    if not isinstance(node, dict):
        return set()
    own = {str(node["Ref"])} if len(node) == 1 and "Ref" in node else set()
    return own | {name for item in node.values() for name in _referenced(item)}


def _arn(service: str, resource: str, *, region: str = REGION) -> str:
    return f"arn:{PARTITION}:{service}:{region}:{ACCOUNT}:{resource}"


@dataclass(slots=True)
class Evaluator:
    """Evaluates a translated template's values under ``scenario``."""

    template: Mapping[str, Any]
    scenario: Scenario
    physical: dict[str, dict[str, str]] = field(default_factory=dict)
    """Logical id → {"Ref": …, attribute: …} of resources whose identity someone else decided."""
    _conditions: dict[str, bool] = field(default_factory=dict)
    _properties: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def resources(self) -> Mapping[str, Any]:
        return cast("Mapping[str, Any]", self.template.get("Resources", {}))

    def exists(self, logical_id: str) -> bool:
        """Whether a resource is created in this scenario (its ``Condition`` holds)."""
        resource = self.resources.get(logical_id)
        return resource is not None and self.condition(resource.get("Condition"))

    def condition(self, name: str | None) -> bool:
        if name is None:
            return True
        if name not in self._conditions:
            declared = self.template.get("Conditions", {})
            if name not in declared:
                raise EvaluationError(f"unknown condition {name}")
            self._conditions[name] = bool(self.value(declared[name]))
        return self._conditions[name]

    def properties(self, logical_id: str) -> dict[str, Any]:
        """A resource's properties, evaluated (once: the template does not change while it is checked, and
        ``physical`` identities are all known before a resource that uses them is evaluated)."""
        if logical_id not in self._properties:
            evaluated = self.value(self.resources[logical_id].get("Properties", {}))
            self._properties[logical_id] = evaluated if isinstance(evaluated, dict) else {}
        return self._properties[logical_id]

    def value(self, node: Any) -> Any:  # noqa: ANN401 - any JSON value
        """``node`` with every intrinsic function evaluated."""
        if isinstance(node, list):
            return [item for item in (self.value(item) for item in node) if item is not _NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((key, argument),) = node.items()
            if key == "Ref":
                return self.ref(argument)
            if key == "Condition":
                return self.condition(argument)
            if key.startswith("Fn::"):
                return self._function(key, argument)
        return {
            key: item for key, item in ((key, self.value(item)) for key, item in node.items()) if item is not _NO_VALUE
        }

    def _function(self, name: str, argument: Any) -> Any:  # noqa: ANN401, PLR0911, PLR0912 - one branch per intrinsic
        if name == "Fn::If":
            condition, when_true, when_false = argument
            return self.value(when_true if self.condition(condition) else when_false)
        if name == "Fn::GetAtt":
            logical_id, attribute = argument if isinstance(argument, list) else argument.split(".", 1)
            return self.attribute(logical_id, attribute)
        if name == "Fn::Sub":
            text, variables = (argument, {}) if isinstance(argument, str) else argument
            return self._sub(text, {key: self.value(item) for key, item in variables.items()})
        if name == "Fn::Join":
            separator, items = argument
            return str(separator).join(str(item) for item in self.value(items))
        if name == "Fn::Select":
            index, items = argument
            return self.value(items)[int(self.value(index))]
        if name == "Fn::Split":
            separator, text = argument
            return str(self.value(text)).split(separator)
        if name == "Fn::FindInMap":
            mapping, key, attribute = (self.value(item) for item in argument)
            return self.template["Mappings"][mapping][key][attribute]
        if name == "Fn::GetAZs":
            return [f"{REGION}a", f"{REGION}b", f"{REGION}c"]
        if name == "Fn::Equals":
            left, right = (_text(self.value(item)) for item in argument)
            return left == right
        if name == "Fn::Not":
            return not self.value(argument[0])
        if name == "Fn::And":
            return all(self.value(item) for item in argument)
        if name == "Fn::Or":
            return any(self.value(item) for item in argument)
        if name == "Fn::Base64":
            return self.value(argument)
        if name == "Fn::Cidr":
            block, count, bits = (self.value(item) for item in argument)
            return _cidrs(str(block), int(count), int(bits))
        if name == "Fn::ImportValue":
            return f"import:{self.value(argument)}"
        raise EvaluationError(f"{name} is not evaluated by the rehearsal")

    def _sub(self, text: str, variables: Mapping[str, Any]) -> str:
        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return str(variables[name])
            if "." in name:
                logical_id, attribute = name.split(".", 1)
                return str(self.attribute(logical_id, attribute))
            return str(self.ref(name))

        return re.sub(r"\$\{([^}]+)\}", replace, text)

    def ref(self, name: str) -> Any:  # noqa: ANN401 - a parameter may be a list
        pseudo = {
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT,
            "AWS::Partition": PARTITION,
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": "such-market",
            "AWS::StackId": _arn("cloudformation", "stack/such-market/rehearsal"),
            "AWS::NoValue": _NO_VALUE,
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.scenario.parameters:
            value = self.scenario.parameters[name]
            kind = str(self.template.get("Parameters", {}).get(name, {}).get("Type", ""))
            return value.split(",") if kind.startswith("List<") or kind == "CommaDelimitedList" else value
        return self.attribute(name, "Ref")

    def attribute(self, logical_id: str, attribute: str) -> str:
        """What ``Ref`` (``attribute == "Ref"``) or ``Fn::GetAtt`` of a resource returns."""
        if logical_id in self.physical and attribute in self.physical[logical_id]:
            return self.physical[logical_id][attribute]
        resource = self.resources.get(logical_id)
        if resource is None:
            raise EvaluationError(f"Ref/GetAtt of unknown resource {logical_id}")
        if resource["Type"] in ("AWS::Lambda::Alias", "AWS::Lambda::Version") and attribute == "Ref":
            # An alias or version is its function's ARN with a qualifier (the alias name; a version number)
            properties = resource.get("Properties", {})
            function = str(self.value(properties.get("FunctionName")))
            function_arn = function if function.startswith("arn:") else _arn("lambda", f"function:{function}")
            return f"{function_arn}:{self.value(properties['Name']) if 'Name' in properties else '1'}"
        identity = _identities(logical_id, resource["Type"], self._name_property(logical_id))
        return identity.get(attribute) or _attribute(logical_id, resource["Type"], attribute)

    def _name_property(self, logical_id: str) -> str | None:
        properties = self.resources[logical_id].get("Properties", {})
        for key in ("Name", "QueueName", "TopicName", "FunctionName", "RoleName", "ManagedPolicyName", "LogGroupName"):
            if key in properties:
                return str(self.value(properties[key]))
        return None


def secret_attributes(node: Any) -> set[tuple[str, str]]:  # noqa: ANN401 - any JSON value
    """Every ``Fn::GetAtt`` of ``node`` that names a secret of a resource this module does not model (an
    Aurora cluster's ``MasterUserSecret.SecretArn``): whoever creates stand-ins for them needs them."""
    found: set[tuple[str, str]] = set()
    if isinstance(node, list):
        for item in node:
            found |= secret_attributes(item)
    elif isinstance(node, dict):
        target = node.get("Fn::GetAtt") if len(node) == 1 else None
        if target is not None:
            logical_id, attribute = target if isinstance(target, list) else str(target).split(".", 1)
            if "Secret" in str(attribute):
                found.add((str(logical_id), str(attribute)))
        for item in node.values():
            found |= secret_attributes(item)
    return found


def _text(value: object) -> str:
    """A value as ``Fn::Equals`` compares it (a list parameter as CloudFormation passes it: comma-joined)."""
    return ",".join(str(item) for item in value) if isinstance(value, list) else str(value)


def _cidrs(block: str, count: int, bits: int) -> list[str]:
    try:
        network = ipaddress.ip_network(block)
    except ValueError:  # a made-up attribute (a VPC's CidrBlock): any private block will do
        network = ipaddress.ip_network("10.0.0.0/16")
    return [str(subnet) for subnet in itertools.islice(network.subnets(new_prefix=network.max_prefixlen - bits), count)]


def _attribute(logical_id: str, kind: str, attribute: str) -> str:
    """A made-up ``Fn::GetAtt`` value of a type this module does not model, shaped as CloudFormation
    returns it where the code parses it: a port is a number, a secret's ARN is an ARN."""
    if attribute.endswith("Port"):
        return str(6379 if "ElastiCache" in kind else 5432 if "RDS" in kind else 443)
    if "Secret" in attribute:
        return _arn("secretsmanager", f"secret:{logical_id}-{attribute.replace('.', '-')}-Rehrsl")
    return f"{logical_id}.{attribute}"


def _identities(logical_id: str, kind: str, name: str | None) -> dict[str, str]:  # noqa: PLR0911 - one per type
    """The made-up physical identity of a resource of type ``kind``."""
    name = name or logical_id
    if kind == "AWS::SecretsManager::Secret":
        arn = _arn("secretsmanager", f"secret:{name}-Rehrsl")
        return {"Ref": arn, "Id": arn}
    if kind == "AWS::Events::EventBus":
        return {"Ref": name, "Name": name, "Arn": _arn("events", f"event-bus/{name}")}
    if kind == "AWS::SQS::Queue":
        url = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{name}"
        return {"Ref": url, "QueueUrl": url, "QueueName": name, "Arn": _arn("sqs", name)}
    if kind == "AWS::IAM::Role":
        return {"Ref": name, "Arn": f"arn:{PARTITION}:iam::{ACCOUNT}:role/{name}", "RoleId": f"AROA{logical_id}"}
    if kind == "AWS::IAM::ManagedPolicy":
        return {"Ref": f"arn:{PARTITION}:iam::{ACCOUNT}:policy/{name}"}
    if kind == "AWS::Lambda::Function":
        return {"Ref": name, "Arn": _arn("lambda", f"function:{name}")}
    if kind == "AWS::SNS::Topic":
        arn = _arn("sns", name)
        return {"Ref": arn, "TopicArn": arn, "TopicName": name}
    if kind == "AWS::Logs::LogGroup":
        return {"Ref": name, "Arn": _arn("logs", f"log-group:{name}:*")}
    if kind == "AWS::Events::Rule":
        return {"Ref": name, "Arn": _arn("events", f"rule/{name}")}
    if kind == "AWS::EC2::SecurityGroup":
        return {"Ref": f"sg-{logical_id}", "GroupId": f"sg-{logical_id}"}
    return {"Ref": logical_id}
