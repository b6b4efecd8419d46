"""The rehearsal's static checks (``make rehearse``) on the translated template: the template passes them,
and removing one grant, target or retention makes them report exactly that function and that resource.

Each case edits the translated template (plain CloudFormation), as a wrong template would be translated.
"""

from __future__ import annotations

import json
from typing import Any

from local.rehearsal.checks import Finding, check_template
from local.rehearsal.evaluate import Evaluator, scenarios
from tests.rehearsal.conftest import CREATED_CACHE_SECRET, CREATED_DATABASE_SECRET


def _given() -> str:
    return "everything given"


def _secret_of(template: dict[str, Any], parameter: str) -> str:
    (given,) = (scenario for scenario in scenarios(template) if scenario.name == _given())
    return given.parameters[parameter]


def _without_managed_policy(template: dict[str, Any], role: str, policy: str) -> None:
    arns = template["Resources"][role]["Properties"]["ManagedPolicyArns"]
    arns[:] = [arn for arn in arns if json.dumps({"Ref": policy}) not in json.dumps(arn)]


def _subjects(findings: list[Finding]) -> set[str]:
    return {finding.subject for finding in findings}


def test_the_template_passes_every_static_check(template: dict[str, Any]) -> None:
    assert check_template(template) == []


def test_a_function_without_the_grant_of_a_secret_its_settings_read_is_reported(template: dict[str, Any]) -> None:
    # Given the read function's role without its database-secret policy
    _without_managed_policy(template, "CollectionNftsFunctionRole", "DatabaseSecretReadPolicy")
    # Then that function, and only it, is reported with the secret's ARN: the created one, or the given one
    findings = check_template(template)
    assert _subjects(findings) == {"CollectionNftsFunction"}
    assert {finding.resource for finding in findings} == {CREATED_DATABASE_SECRET, _secret_of(template, "DbSecretArn")}
    assert {"defaults", _given()} <= {finding.scenario for finding in findings}


def test_the_cache_auth_secret_granted_to_no_function_is_reported_for_every_cache_client(
    template: dict[str, Any],
) -> None:
    # Given the cache AUTH read policy granting nothing (the first deploy that set CacheAuthSecretArn)
    # (its statement on another secret: IAM refuses a policy without one)
    (statement,) = template["Resources"]["CacheAuthSecretReadPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    statement["Resource"] = "arn:aws:secretsmanager:us-east-1:123456789012:secret:another-AbCdEf"
    findings = check_template(template)
    # Then every function whose settings hold a cache client is reported, for the created and the given secret
    assert {finding.resource for finding in findings} == {
        CREATED_CACHE_SECRET,
        _secret_of(template, "CacheAuthSecretArn"),
    }
    assert {"defaults", _given()} <= {finding.scenario for finding in findings}
    assert {"HealthFunction", "CollectionNftsFunction", "InvalidateCacheFunction"} <= _subjects(findings)
    assert "OutboxRelayFunction" not in _subjects(findings)  # no cache in its settings


def test_a_publisher_without_put_events_is_reported(template: dict[str, Any]) -> None:
    policies = template["Resources"]["OutboxRelayFunctionRole"]["Properties"]["Policies"]
    policies[:] = [policy for policy in policies if "events:PutEvents" not in str(policy)]
    findings = check_template(template)
    assert _subjects(findings) == {"OutboxRelayFunction"}
    assert {finding.resource for finding in findings} == {"arn:aws:events:us-east-1:123456789012:event-bus/such-market"}


def test_a_queue_reader_without_its_queue_grant_is_reported(template: dict[str, Any]) -> None:
    policies = template["Resources"]["CacheMetricsFunctionRole"]["Properties"]["Policies"]
    policies[:] = [policy for policy in policies if "sqs:" not in str(policy)]
    findings = check_template(template)
    assert _subjects(findings) == {"CacheMetricsFunction"}
    assert {finding.resource for finding in findings} == {
        "arn:aws:sqs:us-east-1:123456789012:such-market-events-dlq-prod"
    }


def test_a_rule_on_an_unknown_bus_targeting_no_function_and_refused_by_its_dead_letter_queue_is_reported(
    template: dict[str, Any],
) -> None:
    resources = template["Resources"]
    rule = resources["IngestCollectionFunctionIngestRequested"]["Properties"]
    rule["Targets"][0]["Arn"] = "arn:aws:lambda:x"
    rule["EventBusName"] = "elsewhere"
    resources["EventsDeadLetterQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"][0]["Condition"]["ArnEquals"][
        "aws:SourceArn"
    ].pop(0)
    findings = check_template(template)
    assert {(finding.subject, finding.problem) for finding in findings} == {
        ("IngestCollectionFunctionIngestRequested", "listens on a bus the template does not create"),
        ("IngestCollectionFunctionIngestRequested", "targets no function of the template"),
        ("IngestCollectionFunctionIngestRequested", "may not send to its dead-letter queue"),
    }


def test_a_schedule_whose_role_may_not_invoke_its_function_is_reported(template: dict[str, Any]) -> None:
    template["Resources"]["VerifyOwnershipFunctionHourlyRole"]["Properties"]["Policies"] = []
    findings = check_template(template)
    assert _subjects(findings) == {"VerifyOwnershipFunctionHourly"}


def test_log_groups_need_a_retention_and_every_function_one(template: dict[str, Any]) -> None:
    # Given one log group without its retention, and one function's log group gone
    del template["Resources"]["HealthLogGroup"]["Properties"]["RetentionInDays"]
    del template["Resources"]["CollectionNftsLogGroup"]
    findings = check_template(template)
    assert {(finding.subject, finding.problem) for finding in findings} == {
        ("HealthLogGroup", "keeps its logs forever (no RetentionInDays)"),
        ("CollectionNftsFunction", "logs to a group the template does not manage (no retention)"),
    }


def test_functions_in_given_security_groups_must_reach_the_created_proxy(template: dict[str, Any]) -> None:
    # Given a proxy whose ingress admits the functions' created group, but not the given ones
    ingress = template["Resources"]["DatabaseProxySecurityGroup"]["Properties"]["SecurityGroupIngress"][0]
    ingress["SourceSecurityGroupId"] = {
        "Fn::If": ["CreateFunctionSecurityGroup", {"Fn::GetAtt": ["FunctionSecurityGroup", "GroupId"]}, "sg-0000"]
    }
    findings = check_template(template)
    # Then every function is reported, only where the network is given and the database created
    assert {finding.scenario for finding in findings} == {"DbSecretArn left blank"}
    assert {(finding.problem, finding.resource) for finding in findings} == {
        ("cannot reach DatabaseProxy on 5432 (no ingress from its security groups)", "sg-DatabaseProxySecurityGroup")
    }
    assert "HealthFunction" in _subjects(findings)
    assert Evaluator(template, scenarios(template)[0]).attribute("DatabaseProxySecurityGroup", "GroupId") == (
        "sg-DatabaseProxySecurityGroup"
    )


def test_a_route_whose_function_api_gateway_may_not_invoke_is_reported(template: dict[str, Any]) -> None:
    del template["Resources"]["HealthFunctionGetPermission"]
    template["Resources"]["HttpApi"]["Properties"]["Body"]["paths"]["/api/webhook"]["post"][
        "x-amazon-apigateway-integration"
    ]["uri"] = "arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/arn:aws:lambda:gone/invocations"
    findings = check_template(template)
    assert {(finding.problem, finding.resource) for finding in findings} == {
        (
            "/api/health get may not invoke its function",
            "arn:aws:lambda:us-east-1:123456789012:function:HealthFunction:live",
        ),
        ("/api/webhook post calls no function of the template", "arn:aws:lambda:gone"),
    }


def test_a_function_fed_from_a_queue_it_may_not_read_is_reported(template: dict[str, Any]) -> None:
    # Given the metrics function (granted only GetQueueAttributes on the dead-letter queue) fed from it
    template["Resources"]["MetricsFeed"] = {
        "Type": "AWS::Lambda::EventSourceMapping",
        "Properties": {
            "FunctionName": {"Ref": "CacheMetricsFunctionAliaslive"},
            "EventSourceArn": {"Fn::GetAtt": ["EventsDeadLetterQueue", "Arn"]},
        },
    }
    findings = check_template(template, only=scenarios(template)[:1])
    assert {(finding.subject, finding.problem) for finding in findings} == {
        ("CacheMetricsFunction", "its queue source is not granted (sqs:ReceiveMessage)"),
        ("CacheMetricsFunction", "its queue source is not granted (sqs:DeleteMessage)"),
    }


def test_conditions_on_a_choice_are_checked_both_ways(template: dict[str, Any]) -> None:
    # Given a grant that exists only with SnapStart (a condition on an AllowedValues choice) - here the
    # outbox relay's PutEvents, made conditional on the opposite choice
    policies = template["Resources"]["OutboxRelayFunctionRole"]["Properties"]["Policies"]
    index = next(position for position, policy in enumerate(policies) if "events:PutEvents" in str(policy))
    policies[index] = {"Fn::If": ["SnapStartEnabled", {"Ref": "AWS::NoValue"}, policies[index]]}
    findings = check_template(template)
    assert {(finding.scenario, finding.subject) for finding in findings} == {("SnapStart=true", "OutboxRelayFunction")}
