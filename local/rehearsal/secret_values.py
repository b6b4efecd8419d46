"""Made-up values of the stack's secrets, shaped as AWS would store them, for the moto deployment.

From the template, not from a list:

- a secret with ``SecretString`` holds that value (a ``NoEcho`` parameter's made-up key);
- a secret with ``GenerateSecretString`` holds its ``SecretStringTemplate`` with ``GenerateStringKey`` set
  to a made-up password (the database's ``{"username", "dbname", "password"}``, the cache user's
  ``{"username", "password"}``), or a bare made-up password without a template (the admin token);
- a ``SecretTargetAttachment`` adds what AWS adds to the secret of a database: ``engine``, ``host``,
  ``port`` and the cluster's or instance's identifier;
- a secret-ARN parameter (bring your own) holds the shape of the secret the template creates in its place:
  the one the same ``Fn::If`` chooses when the parameter is blank (``DbSecretArn`` ↔ ``DatabaseSecret``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from local.rehearsal.evaluate import Evaluator

SECRET_TYPE = "AWS::SecretsManager::Secret"
_ATTACHED = {
    "AWS::RDS::DBCluster": ("dbClusterIdentifier", "Endpoint.Address", "Endpoint.Port"),
    "AWS::RDS::DBInstance": ("dbInstanceIdentifier", "Endpoint.Address", "Endpoint.Port"),
}


def made_up_password(length: int) -> str:
    return ("Rehearsal0" * (length // 10 + 1))[:length]


def secret_string(evaluator: Evaluator, logical_id: str) -> str:
    """The value of the template's secret ``logical_id`` once CloudFormation has created it."""
    properties = evaluator.properties(logical_id)
    if "SecretString" in properties:
        return str(properties["SecretString"])
    generate = properties.get("GenerateSecretString", {})
    password = made_up_password(int(generate.get("PasswordLength", 32)))
    if "SecretStringTemplate" not in generate:
        return password
    value: dict[str, Any] = json.loads(str(generate["SecretStringTemplate"]))
    value[str(generate.get("GenerateStringKey", "password"))] = password
    for attachment in _attachments(evaluator, logical_id):
        target, kind = str(attachment.get("TargetId")), str(attachment.get("TargetType"))
        target_id = _logical_id(evaluator, target)
        if kind not in _ATTACHED or target_id is None:
            continue
        identifier, address, port = _ATTACHED[kind]
        engine = str(evaluator.properties(target_id).get("Engine", "postgres"))
        value |= {
            "engine": "postgres" if "postgres" in engine else engine,
            "host": evaluator.attribute(target_id, address),
            "port": int(evaluator.attribute(target_id, port)),
            identifier: target,
        }
    return json.dumps(value)


def _attachments(evaluator: Evaluator, secret_id: str) -> Iterator[Mapping[str, Any]]:
    secret = evaluator.attribute(secret_id, "Ref")
    for logical_id, resource in evaluator.resources.items():
        # whether or not created in this scenario: a given secret takes the created one's shape
        if resource["Type"] == "AWS::SecretsManager::SecretTargetAttachment":
            properties = evaluator.properties(logical_id)
            if properties.get("SecretId") == secret:
                yield properties


def _logical_id(evaluator: Evaluator, physical: str) -> str | None:
    return next(
        (logical_id for logical_id in evaluator.resources if evaluator.attribute(logical_id, "Ref") == physical), None
    )


def counterparts(template: Mapping[str, Any]) -> dict[str, str]:
    """Secret-ARN parameter → the template's secret an ``Fn::If`` chooses in its place."""
    resources = template.get("Resources", {})
    parameters = template.get("Parameters", {})
    found: dict[str, str] = {}

    def visit(node: Any) -> None:  # noqa: ANN401 - any JSON value
        if isinstance(node, list):
            for item in node:
                visit(item)
        elif isinstance(node, dict):
            branches = node.get("Fn::If") if len(node) == 1 else None
            if isinstance(branches, list) and len(branches) == len(("condition", "then", "else")):
                names = [str(branch["Ref"]) for branch in branches[1:] if isinstance(branch, dict) and "Ref" in branch]
                secrets = [name for name in names if resources.get(name, {}).get("Type") == SECRET_TYPE]
                given = [name for name in names if name in parameters]
                if len(secrets) == 1 and len(given) == 1:
                    found.setdefault(given[0], secrets[0])
            for item in node.values():
                visit(item)

    visit(template)
    return found
