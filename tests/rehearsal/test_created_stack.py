"""The rehearsal on a stack that creates its database, cache, network and log groups (what the template
becomes when it builds everything): it passes when the wiring is right, whatever the identities of those
parts (an Aurora cluster's generated master secret, the cache's endpoint and port from ``Fn::GetAtt``).

The variant is made from the translated template the way a correct template would say it: the functions'
variables point at the created parts, each grant names the created secret, security groups admit the
functions on 5432 (the proxy) and 6379 (the cache), and every function has a log group with a retention.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from local.rehearsal.checks import check_template, functions
from local.rehearsal.evaluate import scenarios
from local.rehearsal.moto_deploy import rehearse
from local.rehearsal.translate import ROOT, transformed_template

DB_SECRET = {"Fn::GetAtt": ["DatabaseCluster", "MasterUserSecret.SecretArn"]}


def _ingress(group: str, port: int, *, source: str = "FunctionsSecurityGroup") -> dict[str, Any]:
    return {
        "Type": "AWS::EC2::SecurityGroupIngress",
        "Properties": {
            "GroupId": {"Fn::GetAtt": [group, "GroupId"]},
            "SourceSecurityGroupId": {"Fn::GetAtt": [source, "GroupId"]},
            "IpProtocol": "tcp",
            "FromPort": port,
            "ToPort": port,
        },
    }


def _created_stack(template: dict[str, Any]) -> dict[str, Any]:
    created = json.loads(
        json.dumps(template)
        .replace(json.dumps({"Ref": "DbSecretArn"}), json.dumps(DB_SECRET))
        .replace(json.dumps({"Ref": "CacheAuthSecretArn"}), json.dumps({"Ref": "CacheAuthSecret"}))
    )
    resources = created["Resources"]
    for group in ("FunctionsSecurityGroup", "ProxySecurityGroup", "CacheSecurityGroup", "DatabaseSecurityGroup"):
        resources[group] = {"Type": "AWS::EC2::SecurityGroup", "Properties": {"GroupDescription": group}}
    resources["DatabaseCluster"] = {
        "Type": "AWS::RDS::DBCluster",
        "Properties": {"ManageMasterUserPassword": True, "VpcSecurityGroupIds": [{"Ref": "DatabaseSecurityGroup"}]},
    }
    resources["DatabaseProxy"] = {
        "Type": "AWS::RDS::DBProxy",
        "Properties": {"VpcSecurityGroupIds": [{"Fn::GetAtt": ["ProxySecurityGroup", "GroupId"]}]},
    }
    resources["Cache"] = {
        "Type": "AWS::ElastiCache::ServerlessCache",
        "Properties": {"SecurityGroupIds": [{"Ref": "CacheSecurityGroup"}]},
    }
    resources["CacheAuthSecret"] = {"Type": "AWS::SecretsManager::Secret", "Properties": {"Name": "such-market/cache"}}
    resources["ProxyIngress"] = _ingress("ProxySecurityGroup", 5432)
    resources["CacheIngress"] = _ingress("CacheSecurityGroup", 6379)
    resources["DatabaseIngress"] = _ingress("DatabaseSecurityGroup", 5432, source="ProxySecurityGroup")
    # The cache AUTH grant, unconditional now that the stack creates the secret
    statements = resources["SecretsBatchReadPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    statements[1] = statements[1]["Fn::If"][1]
    for function in functions(template):
        properties = resources[function.logical_id]["Properties"]
        properties["VpcConfig"]["SecurityGroupIds"] = [{"Fn::GetAtt": ["FunctionsSecurityGroup", "GroupId"]}]
        variables = properties["Environment"]["Variables"]
        variables["REDIS_AUTH_SECRET_ARN"] = {"Ref": "CacheAuthSecret"}
        variables["REDIS_HOST"] = {"Fn::GetAtt": ["Cache", "Endpoint.Address"]}
        variables["REDIS_PORT"] = {"Fn::GetAtt": ["Cache", "Endpoint.Port"]}
        variables["DB_HOST_OVERRIDE"] = {"Fn::GetAtt": ["DatabaseProxy", "Endpoint"]}
        resources[f"{function.logical_id}LogGroup"] = {
            "Type": "AWS::Logs::LogGroup",
            "Properties": {
                "LogGroupName": {"Fn::Sub": f"/aws/lambda/${{{function.logical_id}}}"},
                "RetentionInDays": 30,
            },
        }
    return created


@pytest.fixture(scope="module")
def created() -> dict[str, Any]:
    return _created_stack(transformed_template(ROOT / "template.yaml"))


def test_a_stack_that_creates_everything_passes_the_static_checks(created: dict[str, Any]) -> None:
    assert check_template(created) == []


def test_a_stack_that_creates_everything_starts_every_function_in_moto(created: dict[str, Any]) -> None:
    assert rehearse(created, only=scenarios(created)[:1]) == []


def test_its_generated_database_secret_ungranted_is_reported_and_refused(created: dict[str, Any]) -> None:
    template = copy.deepcopy(created)
    policies = template["Resources"]["HealthFunctionRole"]["Properties"]["Policies"]
    policies[:] = [policy for policy in policies if "MasterUserSecret" not in json.dumps(policy)]
    findings = check_template(template)
    assert {(finding.subject, finding.resource) for finding in findings} == {
        (
            "HealthFunction",
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:DatabaseCluster-MasterUserSecret-SecretArn-Rehrsl",
        )
    }
    failed = rehearse(template, only=scenarios(template)[:1], functions_named={"HealthFunction"})
    assert len(failed) == 1
    assert "DatabaseCluster-MasterUserSecret-SecretArn" in str(failed[0].error)


def test_a_proxy_that_cannot_reach_its_database_or_functions_that_cannot_reach_the_cache_are_reported(
    created: dict[str, Any],
) -> None:
    template = copy.deepcopy(created)
    del template["Resources"]["DatabaseIngress"]
    del template["Resources"]["CacheIngress"]
    findings = check_template(template, only=scenarios(template)[:1])
    problems = {(finding.subject, finding.problem) for finding in findings}
    assert ("DatabaseProxy", "cannot reach DatabaseCluster on 5432 (no ingress from its security groups)") in problems
    assert {finding.subject for finding in findings} == {"DatabaseProxy"} | {
        function.logical_id for function in functions(template)
    }
    assert {finding.resource for finding in findings} == {"sg-DatabaseSecurityGroup", "sg-CacheSecurityGroup"}
