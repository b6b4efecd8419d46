"""The template migrates on deploy: the custom resource asks for the schema version the code requires,
is served by the migration function (which may read the database secret), and every function that reads
the database waits for it, so no new code serves an old schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from local.template import load_yaml
from such_market.db.migrations import REQUIRED_SCHEMA_VERSION

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def resources() -> dict[str, Any]:
    resources: dict[str, Any] = load_yaml(ROOT / "template.yaml")["Resources"]
    return resources


def test_the_custom_resource_asks_for_the_schema_version_the_code_requires(resources: dict[str, Any]) -> None:
    migrations = resources["DatabaseMigrations"]
    assert migrations["Type"] == "Custom::DatabaseMigrations"
    assert migrations["Properties"]["SchemaVersion"] == REQUIRED_SCHEMA_VERSION
    assert migrations["Properties"]["ServiceToken"] == {"Ref": "MigrateDatabaseFunction.Alias"}
    # and, where the stack creates the database, it runs once the proxy reaches it
    assert migrations["Properties"]["DatabaseTarget"] == {
        "Fn::If": ["CreateDatabase", {"Ref": "DatabaseProxyTargetGroup"}, "given"]
    }


def test_the_migration_function_may_read_the_database_secret(resources: dict[str, Any]) -> None:
    function = resources["MigrateDatabaseFunction"]["Properties"]
    assert function["Handler"] == "migrate_database.lambda_handler"
    # the created database's secret, or the given one (the policy chooses)
    assert {"Ref": "DatabaseSecretReadPolicy"} in function["Policies"]
    assert "VpcConfig" not in function  # the Globals' VpcConfig applies: it reaches the database


def test_every_function_that_reads_the_database_waits_for_the_migrations(resources: dict[str, Any]) -> None:
    readers = [
        name
        for name, resource in resources.items()
        if resource["Type"] == "AWS::Serverless::Function"
        and name != "MigrateDatabaseFunction"
        and {"Ref": "DatabaseSecretReadPolicy"} in resource["Properties"].get("Policies", [])
    ]
    assert len(readers) >= 25
    waiting = [
        name for name in readers if resources[name].get("DependsOn") in ("DatabaseMigrations", ["DatabaseMigrations"])
    ]
    assert waiting == readers


def test_the_custom_resource_can_answer_and_fails_in_minutes(resources: dict[str, Any]) -> None:
    migrations = resources["DatabaseMigrations"]
    # its log group is there before Lambda could create it on the first invocation
    assert migrations["DependsOn"] == "MigrateDatabaseLogGroup"
    # a lost answer fails the deploy soon after the function's own timeout, not after CloudFormation's hour
    timeout = resources["MigrateDatabaseFunction"]["Properties"]["Timeout"]
    assert timeout < migrations["Properties"]["ServiceTimeout"] <= timeout + 120
    # in a created network, its way out (the NAT routes of both private subnets) outlives its Delete
    condition, egress, given = migrations["Properties"]["NetworkEgress"]["Fn::If"]
    assert (condition, given) == ("CreateNetwork", "given")
    routes = {ref["Ref"] for ref in egress["Fn::Join"][1]}
    assert {
        "PrivateDefaultRouteA",
        "PrivateDefaultRouteB",
        "PrivateSubnetARouteTable",
        "PrivateSubnetBRouteTable",
    } <= routes
