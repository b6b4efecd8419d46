"""The template gives every function the secrets extension (unless told not to), the variable that tells the
code it is there, the grant of the batch fallback, and SnapStart on published versions behind an alias."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from local.template import load_yaml

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_yaml(ROOT / "template.yaml")


def test_every_function_gets_the_extension_layer_of_its_region_unless_none(template: dict[str, Any]) -> None:
    function_globals = template["Globals"]["Function"]
    extension = function_globals["Layers"][1]["Fn::If"]
    assert extension[0] == "HasSecretsExtension"
    assert extension[2] == {"Ref": "AWS::NoValue"}
    regional, given = extension[1]["Fn::If"][1:]
    arn, variables = regional["Fn::Sub"]
    assert arn.startswith("arn:${AWS::Partition}:lambda:${AWS::Region}:${Account}:layer:")
    assert "AWS-Parameters-and-Secrets-Lambda-Extension:" in arn
    assert variables["Account"] == {"Fn::FindInMap": ["SecretsExtensionLayer", {"Ref": "AWS::Region"}, "Account"]}
    assert given == {"Ref": "SecretsExtensionLayerArn"}
    assert template["Mappings"]["SecretsExtensionLayer"]["us-east-1"] == {"Account": "177933569100"}
    assert template["Conditions"]["HasSecretsExtension"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "SecretsExtensionLayerArn"}, "none"]}]
    }
    # The code uses the extension only when this variable is set: only with the layer
    port = function_globals["Environment"]["Variables"]["PARAMETERS_SECRETS_EXTENSION_HTTP_PORT"]
    assert port == {"Fn::If": ["HasSecretsExtension", "2773", {"Ref": "AWS::NoValue"}]}


def test_every_function_that_reads_a_secret_may_read_them_in_one_batch(template: dict[str, Any]) -> None:
    policy = template["Resources"]["SecretsBatchReadPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert policy[0] == {"Effect": "Allow", "Action": "secretsmanager:BatchGetSecretValue", "Resource": "*"}
    # Besides the batch, only the cache AUTH secret (every cache client reads it), and only when it is given
    assert policy[1:] == [
        {
            "Fn::If": [
                "HasCacheAuth",
                {
                    "Effect": "Allow",
                    "Action": "secretsmanager:GetSecretValue",
                    "Resource": {"Ref": "CacheAuthSecretArn"},
                },
                {"Ref": "AWS::NoValue"},
            ]
        }
    ]
    for name, resource in template["Resources"].items():
        policies = resource.get("Properties", {}).get("Policies", [])
        if any("AWSSecretsManagerGetSecretValuePolicy" in policy for policy in policies if isinstance(policy, dict)):
            assert {"Ref": "SecretsBatchReadPolicy"} in policies, name


def test_snapstart_is_a_parameter_applied_to_published_versions(template: dict[str, Any]) -> None:
    function_globals = template["Globals"]["Function"]
    assert template["Parameters"]["SnapStart"]["AllowedValues"] == ["true", "false"]
    assert function_globals["SnapStart"] == {"ApplyOn": {"Fn::If": ["SnapStartEnabled", "PublishedVersions", "None"]}}
    assert function_globals["AutoPublishAlias"] == "live"
    # The authorizer is invoked through the alias too, so its snapshot serves
    authorizer = template["Resources"]["HttpApi"]["Properties"]["Auth"]["Authorizers"]["AdminAuthorizer"]
    assert authorizer["FunctionArn"] == {"Ref": "AdminAuthorizerFunction.Alias"}
