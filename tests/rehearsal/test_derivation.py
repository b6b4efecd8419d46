"""The rehearsal's parts on their own: needs derived from a handler's settings (not from a list), made-up
parameter values that satisfy the template's constraints, scenarios its ``Rules`` accept, secrets made up
in the shape the code reads, and moto answering ``BatchGetSecretValue`` per secret as AWS does."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from local.rehearsal.evaluate import EvaluationError, Evaluator, made_up_value, refused_by_rules, scenarios
from local.rehearsal.moto_deploy import enforce_resources, environment, iam_enforced
from local.rehearsal.needs import code_needs
from local.rehearsal.secret_values import counterparts, secret_string

HANDLER = '''
"""A handler whose settings hold a new part."""
from such_market.config import CacheSettings, FunctionSettings, SettingsPart


class WidgetSettings(SettingsPart):
    widget_secret_arn: str | None = None
    widget_bus_name: str = "widgets"
    widget_queue_url: str | None = None


class WidgetFunctionSettings(FunctionSettings):
    widget: WidgetSettings


def lambda_handler(event: object, context: object) -> None:
    del event, context
    CacheSettings()
'''


def test_a_new_part_with_a_secret_a_bus_and_a_queue_is_a_new_need(tmp_path: Path) -> None:
    (tmp_path / "rehearsal_widget.py").write_text(HANDLER)
    needs = code_needs(tmp_path, "rehearsal_widget.lambda_handler")
    assert [kind.__name__ for kind in needs.settings] == ["WidgetFunctionSettings"]
    # The cache part, loaded alone, counts too
    assert needs.secret_variables == {"WIDGET_SECRET_ARN", "REDIS_AUTH_SECRET_ARN"}
    assert needs.bus_variables == {"WIDGET_BUS_NAME"}
    assert needs.queue_variables == {"WIDGET_QUEUE_URL"}


def test_made_up_values_satisfy_the_parameter_constraints() -> None:
    secret = {"Type": "String", "AllowedPattern": "^arn:aws[a-z-]*:secretsmanager:.+$"}
    assert made_up_value("DbSecretArn", secret, optional_given=False).startswith("arn:aws:secretsmanager:")
    optional = {"Type": "String", "Default": "", "AllowedPattern": "^(|none|arn:aws[a-z-]*:lambda:.+)$"}
    assert made_up_value("LayerArn", optional, optional_given=False) == ""
    assert made_up_value("LayerArn", optional, optional_given=True).startswith("arn:aws:lambda:")
    assert made_up_value("Port", {"Type": "Number", "MinValue": 1}, optional_given=True) == "1"
    subnets = made_up_value("SubnetIds", {"Type": "List<AWS::EC2::Subnet::Id>"}, optional_given=False)
    assert [subnet.startswith("subnet-") for subnet in subnets.split(",")] == [True, True]
    with pytest.raises(EvaluationError, match="Impossible"):
        made_up_value("Impossible", {"Type": "String", "AllowedPattern": "^$x"}, optional_given=False)


def test_made_up_values_fit_patterns_that_allow_blank_and_name_what_the_parameter_is() -> None:
    def given(name: str, declaration: dict[str, object]) -> str:
        return made_up_value(name, {"Type": "String", "Default": "", **declaration}, optional_given=True)

    assert given("VpcId", {"AllowedPattern": "^(|vpc-[0-9a-f]+)$"}).startswith("vpc-")
    subnets = given("SubnetIds", {"AllowedPattern": "^(|subnet-[0-9a-f]+(,subnet-[0-9a-f]+)*)$"})
    assert [subnet.startswith("subnet-") for subnet in subnets.split(",")] == [True, True]
    groups = given("SecurityGroupIds", {"AllowedPattern": "^(|sg-[0-9a-f]+(,sg-[0-9a-f]+)*)$"})
    assert [group.startswith("sg-") for group in groups.split(",")] == [True, True]
    assert given("CacheEndpoint", {}) == "cache-endpoint.rehearsal.example.com"  # no pattern: the name says
    # a NoEcho key is the secret's value, not a reference to one
    key = made_up_value("AlchemyApiKey", {"Type": "String", "NoEcho": True, "MinLength": 1}, optional_given=False)
    assert key == "rehearsal-alchemy-api-key-value"


def test_scenarios_are_only_combinations_the_template_rules_accept(translated: dict[str, object]) -> None:
    every = scenarios(translated, every_choice=True)
    assert all(refused_by_rules(translated, scenario.parameters) == [] for scenario in every)
    names = {scenario.name for scenario in every}
    # SubnetIds alone breaks VpcOfExistingSubnets, SubnetIds left blank breaks SecurityGroupsNeedSubnets
    assert {"defaults", "everything given", "DbSecretArn left blank", "CacheClusterMode=false"} <= names
    assert not {"SubnetIds given alone", "SubnetIds left blank"} & names
    (standalone,) = (scenario for scenario in every if scenario.name == "CacheClusterMode=false")
    assert standalone.parameters["CacheEndpoint"] != ""  # the created cache must stay clustered
    assert not any(name.startswith("LogRetentionDays=") for name in names)  # no condition reads it
    broken = {**every[0].parameters, "SubnetIds": "subnet-0a"}
    assert [refusal.split(":")[0] for refusal in refused_by_rules(translated, broken)] == ["VpcOfExistingSubnets"]


def test_secrets_are_made_up_in_the_shape_the_code_reads(translated: dict[str, object]) -> None:
    evaluator = Evaluator(translated, scenarios(translated)[0])
    database = json.loads(secret_string(evaluator, "DatabaseSecret"))
    assert set(database) == {"username", "password", "dbname", "engine", "host", "port", "dbClusterIdentifier"}
    assert (database["username"], database["port"], len(database["password"])) == ("such_market", 5432, 32)
    assert set(json.loads(secret_string(evaluator, "CacheAuthSecret"))) == {"username", "password"}
    assert len(secret_string(evaluator, "AdminTokenSecret")) == 48
    assert secret_string(evaluator, "AlchemyApiKeySecret") == "rehearsal-alchemy-api-key-value"
    # a given secret takes the shape of the one the template creates in its place
    assert counterparts(translated) == {"DbSecretArn": "DatabaseSecret", "CacheAuthSecretArn": "CacheAuthSecret"}


def test_moto_answers_a_batch_with_only_the_secrets_the_caller_may_read() -> None:
    with mock_aws(), enforce_resources(), environment({"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"}):
        secrets, iam = boto3.client("secretsmanager", "us-east-1"), boto3.client("iam", "us-east-1")
        allowed = secrets.create_secret(Name="allowed", SecretString="one")["ARN"]
        denied = secrets.create_secret(Name="denied", SecretString="two")["ARN"]
        iam.create_user(UserName="reader")
        statements = [
            {"Effect": "Allow", "Action": "secretsmanager:BatchGetSecretValue", "Resource": "*"},
            {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": allowed},
        ]
        iam.put_user_policy(
            UserName="reader",
            PolicyName="read",
            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": statements}),
        )
        key = iam.create_access_key(UserName="reader")["AccessKey"]
        reader = boto3.client(
            "secretsmanager",
            "us-east-1",
            aws_access_key_id=key["AccessKeyId"],
            aws_secret_access_key=key["SecretAccessKey"],
        )
        with iam_enforced():
            answer = reader.batch_get_secret_value(SecretIdList=[allowed, denied])
            with pytest.raises(reader.exceptions.ClientError, match="AccessDenied"):
                reader.get_secret_value(SecretId=denied)
    assert [value["SecretString"] for value in answer["SecretValues"]] == ["one"]
    assert [(error["SecretId"], error["ErrorCode"]) for error in answer["Errors"]] == [
        (denied, "AccessDeniedException")
    ]
