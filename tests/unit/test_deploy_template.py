"""Deploy from nothing (docs/deploy.md#deploy): the guided deploy asks five answers, every piece is created unless
given, the created security groups let in only the functions on their port, every function may read the secret
of each settings part it has, the connection budget holds, and every log group has a retention."""

from __future__ import annotations

import importlib
import inspect
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from local.template import DEFAULT_TEMPLATE, load_yaml
from such_market.config import CacheSettings, DatabaseSettings, FunctionSettings, SettingsPart

ROOT = Path(__file__).resolve().parents[2]
FUNCTION_TYPE = "AWS::Serverless::Function"
NO_VALUE = {"Ref": "AWS::NoValue"}
CACHE_GRANT = {"Fn::If": ["HasCacheAuth", {"Ref": "CacheAuthSecretReadPolicy"}, NO_VALUE]}
# Aurora PostgreSQL's max_connections for a 0.5-1 ACU range, the smallest DbMaxCapacity allows (AWS re:Post,
# "Working of max_connections for Amazon Aurora PostgreSQL Serverless"); it grows with DbMaxCapacity.
SMALLEST_MAX_CONNECTIONS = 189
CONNECTIONS_PER_CONTAINER = 1  # such_market.db.connection: one per thread; a container serves one request


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_yaml(DEFAULT_TEMPLATE)


@pytest.fixture(scope="module")
def resources(template: dict[str, Any]) -> dict[str, Any]:
    resources: dict[str, Any] = template["Resources"]
    return resources


def _functions(resources: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: r["Properties"] for name, r in resources.items() if r["Type"] == FUNCTION_TYPE}


def _settings_parts(handler_module: str) -> set[type[SettingsPart]]:
    """The settings parts a handler's code reads: those of every settings model its module names."""
    module = importlib.import_module(handler_module)
    parts: set[type[SettingsPart]] = set()
    for value in vars(module).values():
        if inspect.isclass(value) and issubclass(value, FunctionSettings) and value is not FunctionSettings:
            parts.update(value.parts().values())
        elif inspect.isclass(value) and issubclass(value, SettingsPart) and value is not SettingsPart:
            parts.add(value)
    return parts


def _reads(function: dict[str, Any], part: type[SettingsPart]) -> bool:
    return any(issubclass(found, part) for found in _settings_parts(function["Handler"].rpartition(".")[0]))


def test_the_guided_deploy_asks_only_the_five_answers(template: dict[str, Any]) -> None:
    parameters = template["Parameters"]
    without_default = {name for name, parameter in parameters.items() if "Default" not in parameter}
    assert without_default == {"AlchemyApiKey", "AlchemyWebhookSigningKey", "NeynarApiKey", "MiniAppUrl"}
    assert parameters["AlarmEmail"]["Default"] == ""  # the fifth, optional
    for key in ("AlchemyApiKey", "AlchemyWebhookSigningKey", "NeynarApiKey"):
        assert parameters[key]["NoEcho"] is True
    # samconfig.toml forces no other answer
    deploy = tomllib.loads((ROOT / "samconfig.toml").read_text())["default"]["deploy"]["parameters"]
    assert "parameter_overrides" not in deploy


def test_the_keys_become_secrets_and_the_admin_token_is_generated(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    for parameter, secret, variable in (
        ("AlchemyApiKey", "AlchemyApiKeySecret", "ALCHEMY_API_KEY_SECRET_ARN"),
        ("NeynarApiKey", "NeynarApiKeySecret", "NEYNAR_API_KEY_SECRET_ARN"),
    ):
        assert resources[secret]["Type"] == "AWS::SecretsManager::Secret"
        assert resources[secret]["Properties"]["SecretString"] == {"Ref": parameter}
        assert variables[variable] == {"Ref": secret}
    webhook = resources["AlchemyWebhookSigningKeySecret"]["Properties"]
    assert webhook["SecretString"] == {"Ref": "AlchemyWebhookSigningKey"}
    signing_variable = resources["AlchemyWebhookFunction"]["Properties"]["Environment"]["Variables"]
    assert signing_variable["ALCHEMY_WEBHOOK_SIGNING_KEY_SECRET_ARN"] == {"Ref": "AlchemyWebhookSigningKeySecret"}
    # The generated token is the token itself: letters and digits, never 64 characters (a digest's length)
    generated = resources["AdminTokenSecret"]["Properties"]["GenerateSecretString"]
    assert generated == {"PasswordLength": 48, "ExcludePunctuation": True}
    assert variables["ADMIN_TOKEN_SECRET_ARN"] == {"Ref": "AdminTokenSecret"}
    command = template["Outputs"]["AdminTokenCommand"]["Value"]["Fn::Sub"]
    assert "aws secretsmanager get-secret-value" in command
    assert "--secret-id ${AdminTokenSecret} --query SecretString --output text" in command


def _conditioned(resources: dict[str, Any], condition: str) -> set[str]:
    return {name for name, resource in resources.items() if resource.get("Condition") == condition}


def test_each_piece_is_created_when_its_parameter_is_empty(template: dict[str, Any]) -> None:
    conditions = template["Conditions"]
    assert conditions["CreateNetwork"] == {"Fn::Equals": [{"Ref": "SubnetIds"}, ""]}
    assert conditions["CreateFunctionSecurityGroup"] == {"Fn::Equals": [{"Ref": "SecurityGroupIds"}, ""]}
    assert conditions["CreateDatabase"] == {"Fn::Equals": [{"Ref": "DbSecretArn"}, ""]}
    assert conditions["CreateCache"] == {"Fn::Equals": [{"Ref": "CacheEndpoint"}, ""]}
    resources = template["Resources"]
    assert {"Vpc", "PrivateSubnetA", "PrivateSubnetB", "NatGatewayA"} <= _conditioned(resources, "CreateNetwork")
    assert resources["NatGatewayB"]["Condition"] == "CreateSecondNatGateway"
    assert {"DatabaseCluster", "DatabaseInstance", "DatabaseProxy", "DatabaseSecret"} <= _conditioned(
        resources, "CreateDatabase"
    )
    assert {"Cache", "CacheUser", "CacheUserGroup", "CacheAuthSecret"} <= _conditioned(resources, "CreateCache")
    # The functions run in the created private subnets, or the given ones
    vpc = template["Globals"]["Function"]["VpcConfig"]
    assert vpc["SubnetIds"] == {
        "Fn::If": [
            "CreateNetwork",
            [{"Ref": "PrivateSubnetA"}, {"Ref": "PrivateSubnetB"}],
            {"Fn::Split": [",", {"Ref": "SubnetIds"}]},
        ]
    }


def test_the_database_is_aurora_serverless_behind_a_tls_proxy(template: dict[str, Any]) -> None:
    resources = template["Resources"]
    cluster = resources["DatabaseCluster"]
    assert cluster["DeletionPolicy"] == cluster["UpdateReplacePolicy"] == "Snapshot"
    assert cluster["Properties"]["Engine"] == "aurora-postgresql"
    assert re.match(r"^16\.\d+$", template["Parameters"]["DbEngineVersion"]["Default"])
    scaling = cluster["Properties"]["ServerlessV2ScalingConfiguration"]
    assert scaling == {"MinCapacity": {"Ref": "DbMinCapacity"}, "MaxCapacity": {"Ref": "DbMaxCapacity"}}
    assert resources["DatabaseInstance"]["Properties"]["DBInstanceClass"] == "db.serverless"
    proxy = resources["DatabaseProxy"]["Properties"]
    assert proxy["RequireTLS"] is True
    assert proxy["Auth"][0]["SecretArn"] == {"Ref": "DatabaseSecret"}
    # The secret holds what such_market.db.connection.resolve_dsn reads: username, password and dbname here,
    # host and port from the attachment; the functions connect to the proxy instead of the secret's host.
    secret = resources["DatabaseSecret"]["Properties"]["GenerateSecretString"]
    assert set(json.loads(secret["SecretStringTemplate"])) == {"username", "dbname"}
    assert secret["GenerateStringKey"] == "password"
    assert resources["DatabaseSecretAttachment"]["Properties"]["TargetId"] == {"Ref": "DatabaseCluster"}
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["DB_SECRET_ARN"] == {
        "Fn::If": ["CreateDatabase", {"Ref": "DatabaseSecret"}, {"Ref": "DbSecretArn"}]
    }
    assert variables["DB_HOST_OVERRIDE"]["Fn::If"][:2] == [
        "CreateDatabase",
        {"Fn::GetAtt": ["DatabaseProxy", "Endpoint"]},
    ]


def test_the_cache_user_is_the_one_the_client_authenticates_as(template: dict[str, Any]) -> None:
    resources = template["Resources"]
    cache = resources["Cache"]["Properties"]
    assert (cache["Engine"], cache["UserGroupId"]) == ("valkey", {"Ref": "CacheUserGroup"})
    secret = resources["CacheAuthSecret"]["Properties"]["GenerateSecretString"]
    # {"username", "password"}: the form such_market.cache.client.credentials sends as AUTH username password
    assert secret["GenerateStringKey"] == "password"
    username = json.loads(secret["SecretStringTemplate"]["Fn::Sub"])["username"]
    user = resources["CacheUser"]["Properties"]
    assert user["UserName"] == {"Fn::Sub": username}
    assert user["AuthenticationMode"] == {
        "Type": "password",
        "Passwords": [{"Fn::Sub": "{{resolve:secretsmanager:${CacheAuthSecret}:SecretString:password}}"}],
    }
    # The user group's required "default" user is disabled: no access without our user's password
    default = resources["CacheDisabledDefaultUser"]["Properties"]
    assert default["UserName"] == "default"
    assert default["AccessString"].startswith("off ")
    assert resources["CacheUserGroup"]["Properties"]["UserIds"] == [
        {"Ref": "CacheUser"},
        {"Ref": "CacheDisabledDefaultUser"},
    ]
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["REDIS_AUTH_SECRET_ARN"]["Fn::If"][:2] == ["CreateCache", {"Ref": "CacheAuthSecret"}]
    assert variables["REDIS_TLS"] == "true"


FUNCTIONS_SG = {
    "Fn::If": [
        "CreateFunctionSecurityGroup",
        {"Fn::GetAtt": ["FunctionSecurityGroup", "GroupId"]},
        {"Fn::Select": [0, {"Fn::Split": [",", {"Ref": "SecurityGroupIds"}]}]},
    ]
}


@pytest.mark.parametrize(
    ("group", "port", "source"),
    [
        ("DatabaseProxySecurityGroup", 5432, FUNCTIONS_SG),
        ("CacheSecurityGroup", 6379, FUNCTIONS_SG),
        ("DatabaseSecurityGroup", 5432, {"Fn::GetAtt": ["DatabaseProxySecurityGroup", "GroupId"]}),
    ],
)
def test_a_created_security_group_lets_in_only_its_port_from_its_client(
    resources: dict[str, Any], group: str, port: int, source: dict[str, Any]
) -> None:
    (rule,) = resources[group]["Properties"]["SecurityGroupIngress"]
    assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == ("tcp", port, port)
    assert rule["SourceSecurityGroupId"] == source
    assert not {"CidrIp", "CidrIpv6", "SourcePrefixListId"} & set(rule)


def test_nothing_else_comes_in(resources: dict[str, Any]) -> None:
    groups = {name for name, r in resources.items() if r["Type"] == "AWS::EC2::SecurityGroup"}
    assert groups == {
        "FunctionSecurityGroup",
        "DatabaseProxySecurityGroup",
        "DatabaseSecurityGroup",
        "CacheSecurityGroup",
    }
    assert "SecurityGroupIngress" not in resources["FunctionSecurityGroup"]["Properties"]
    assert not [name for name, r in resources.items() if r["Type"] == "AWS::EC2::SecurityGroupIngress"]
    # The database and the cache are reached only through these groups
    assert resources["DatabaseCluster"]["Properties"]["VpcSecurityGroupIds"] == [
        {"Fn::GetAtt": ["DatabaseSecurityGroup", "GroupId"]}
    ]
    assert resources["Cache"]["Properties"]["SecurityGroupIds"] == [{"Fn::GetAtt": ["CacheSecurityGroup", "GroupId"]}]


def test_every_function_reading_the_cache_may_read_its_auth_secret(resources: dict[str, Any]) -> None:
    # The bug this fixes: no function was granted CacheAuthSecretArn, so every cache route answered 500 with it
    readers = {name for name, f in _functions(resources).items() if _reads(f, CacheSettings)}
    assert len(readers) >= 20
    for name in readers:
        assert CACHE_GRANT in resources[name]["Properties"]["Policies"], name
    policy = resources["CacheAuthSecretReadPolicy"]
    assert policy["Condition"] == "HasCacheAuth"
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Action"] == "secretsmanager:GetSecretValue"
    assert statement["Resource"] == {
        "Fn::If": ["HasGivenCacheAuth", {"Ref": "CacheAuthSecretArn"}, {"Ref": "CacheAuthSecret"}]
    }


def test_each_secret_read_by_a_settings_part_is_granted(resources: dict[str, Any]) -> None:
    from such_market.config import AdminSettings
    from such_market.ownership.webhook import WebhookSigningSettings

    grants = {
        DatabaseSettings: "DatabaseSecretReadPolicy",
        AdminSettings: "AdminTokenReadPolicy",
        WebhookSigningSettings: "AlchemyWebhookSigningKeyReadPolicy",
    }
    for name, function in _functions(resources).items():
        for part, policy in grants.items():
            if _reads(function, part):
                assert {"Ref": policy} in function["Policies"], (name, policy)
        # and every function that reads a secret may read them all in one batch (no extension)
        if any(isinstance(p, dict) and "ReadPolicy" in json.dumps(p) for p in function.get("Policies", [])):
            assert {"Ref": "SecretsBatchReadPolicy"} in function["Policies"], name


def test_the_connection_budget_holds_at_the_smallest_database(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    parameters = template["Parameters"]
    assert parameters["DbMaxCapacity"]["MinValue"] >= 1
    proxy_share = parameters["DbProxyMaxConnectionsPercent"]["Default"] / 100
    smallest_share = parameters["DbProxyMaxConnectionsPercent"]["MinValue"] / 100
    pool = resources["DatabaseProxyTargetGroup"]["Properties"]["ConnectionPoolConfigurationInfo"]
    assert pool["MaxConnectionsPercent"] == {"Ref": "DbProxyMaxConnectionsPercent"}
    proxy_connections = int(SMALLEST_MAX_CONNECTIONS * proxy_share)
    reserved = 0
    for name, function in _functions(resources).items():
        if not _reads(function, DatabaseSettings):
            continue
        events = function.get("Events", {}).values()
        background = any(event["Type"] != "HttpApi" for event in events)
        cap = function.get("ReservedConcurrentExecutions")
        # Every function that reads the database off the API (schedules, rules) is capped
        if background:
            assert cap is not None, name
        if cap is not None:
            assert cap["Fn::If"][0] == "ReservesConcurrency"
            assert cap["Fn::If"][2] == NO_VALUE
            reserved += cap["Fn::If"][1] * CONNECTIONS_PER_CONTAINER
    # The capped functions take at most a quarter of what the proxy may open at 1 ACU: the API keeps the rest;
    # and at most half of it at the smallest share the template allows the proxy
    assert 0 < reserved <= proxy_connections // 4
    assert reserved <= int(SMALLEST_MAX_CONNECTIONS * smallest_share) // 2


def test_every_log_group_has_a_retention_and_every_function_its_log_group(resources: dict[str, Any]) -> None:
    log_groups = {name: r["Properties"] for name, r in resources.items() if r["Type"] == "AWS::Logs::LogGroup"}
    for name, properties in log_groups.items():
        assert properties["RetentionInDays"] == {"Ref": "LogRetentionDays"}, name
    names = {json.dumps(properties["LogGroupName"]) for properties in log_groups.values()}
    for function in _functions(resources):
        assert json.dumps({"Fn::Sub": f"/aws/lambda/${{{function}}}"}) in names, function
    access = resources["HttpApi"]["Properties"]["AccessLogSettings"]
    assert access["DestinationArn"] == {"Fn::GetAtt": ["ApiAccessLogGroup", "Arn"]}
    assert "$context.requestId" in access["Format"]
    throttling = resources["HttpApi"]["Properties"]["DefaultRouteSettings"]
    assert throttling == {
        "ThrottlingBurstLimit": {"Ref": "ApiThrottlingBurstLimit"},
        "ThrottlingRateLimit": {"Ref": "ApiThrottlingRateLimit"},
    }


def test_the_dashboard_shows_what_the_operator_watches(template: dict[str, Any], resources: dict[str, Any]) -> None:
    body = resources["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    filled = re.sub(r"\$\{[^}]+\}", "0", body)
    widgets = json.loads(filled)["widgets"]
    lines = [line for widget in widgets for line in widget["properties"]["metrics"]]
    metrics = {line[1] for line in lines if isinstance(line[0], str)}
    expressions = " ".join(line[0]["expression"] for line in lines if isinstance(line[0], dict))
    assert {"CacheHit", "CacheMiss", "CacheStale", "Count", "4xx", "5xx"} <= metrics
    assert {"ApproximateNumberOfMessagesVisible", "OutboxOldestUnpublishedAgeSeconds"} <= metrics
    for searched in ("Latency", "Errors", "Throttles", "Duration", "ConcurrentExecutions", "DatabaseConnections"):
        assert f'MetricName="{searched}"' in expressions, searched
    assert "'p50'" in expressions
    assert "'p99'" in expressions
    outputs = template["Outputs"]
    assert outputs["AlchemyWebhookUrl"]["Value"]["Fn::Sub"].endswith("/api/webhooks/alchemy")
    assert outputs["MiniAppWebhookUrl"]["Value"]["Fn::Sub"].endswith("/api/webhook")
    assert "dashboards:name=${Dashboard}" in outputs["DashboardUrl"]["Value"]["Fn::Sub"]
