"""What an IAM role of a translated template may do: its statements gathered, and IAM's matching rules.

A role's statements are its inline ``Policies``, the documents of the template's own managed policies
among its ``ManagedPolicyArns``, and every ``AWS::IAM::Policy``/``AWS::IAM::ManagedPolicy`` that names the
role in ``Roles``. AWS's own managed policies (``arn:aws:iam::aws:policy/…``: logs, X-Ray, VPC network
interfaces) are not expanded: they grant none of the secrets, buses and queues the rehearsal checks.
An explicit ``Deny`` wins; conditions are not evaluated (a conditional allow counts as an allow).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from local.rehearsal.evaluate import Evaluator

AWS_MANAGED_POLICY_PREFIX = "arn:aws:iam::aws:policy/"


def _as_list(value: object) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def matches(pattern: str, value: str, *, case_sensitive: bool = True) -> bool:
    """IAM's wildcard match: ``*`` any run of characters, ``?`` one character."""
    regex = "".join(".*" if char == "*" else "." if char == "?" else re.escape(char) for char in pattern)
    return re.fullmatch(regex, value, 0 if case_sensitive else re.IGNORECASE) is not None


@dataclass(frozen=True, slots=True)
class Permissions:
    """The evaluated statements of one role."""

    statements: tuple[Mapping[str, Any], ...]

    def _matching(self, effect: str, action: str, resource: str) -> bool:
        for statement in self.statements:
            if statement.get("Effect") != effect or "Action" not in statement:
                continue
            actions = _as_list(statement.get("Action"))
            resources = _as_list(statement.get("Resource", "*"))
            if any(matches(str(pattern), action, case_sensitive=False) for pattern in actions) and any(
                matches(str(pattern), resource) for pattern in resources
            ):
                return True
        return False

    def allows(self, action: str, resource: str) -> bool:
        """Whether ``action`` on ``resource`` is allowed (and not explicitly denied)."""
        return self._matching("Allow", action, resource) and not self._matching("Deny", action, resource)


def _documents_of(evaluator: Evaluator, role_id: str) -> Iterable[Any]:
    role = evaluator.properties(role_id)
    for policy in _as_list(role.get("Policies")):
        yield policy.get("PolicyDocument", {})
    role_refs = {evaluator.attribute(role_id, "Ref"), role_id}
    managed_arns = {str(arn) for arn in _as_list(role.get("ManagedPolicyArns"))}
    for logical_id, resource in evaluator.resources.items():
        if resource["Type"] not in ("AWS::IAM::ManagedPolicy", "AWS::IAM::Policy") or not evaluator.exists(logical_id):
            continue
        attached = evaluator.attribute(logical_id, "Ref") in managed_arns
        properties = evaluator.properties(logical_id)
        if attached or role_refs & {str(role) for role in _as_list(properties.get("Roles"))}:
            yield properties.get("PolicyDocument", {})


def role_permissions(evaluator: Evaluator, role_id: str) -> Permissions:
    """Everything the role ``role_id`` of the template is granted (see the module doc)."""
    statements = tuple(
        statement for document in _documents_of(evaluator, role_id) for statement in _as_list(document.get("Statement"))
    )
    return Permissions(statements)


def role_of(evaluator: Evaluator, role_arn: str) -> str | None:
    """The logical id of the template's role whose ARN is ``role_arn``."""
    for logical_id, resource in evaluator.resources.items():
        if resource["Type"] == "AWS::IAM::Role" and evaluator.attribute(logical_id, "Arn") == role_arn:
            return logical_id
    return None
