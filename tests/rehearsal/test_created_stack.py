"""The rehearsal on the stack the template creates by default (the main case): with every "bring your own"
parameter blank, it creates the network, Aurora behind an RDS Proxy, ElastiCache Serverless and the secrets,
and the rehearsal proves that wiring - the created secrets granted through their ``*ReadPolicy``, the
created security groups letting the functions reach the proxy and the cache (and the proxy the database),
every function's log group with a retention - and that removing one piece is reported for exactly the
function it belongs to, statically and (for a grant) by moto's AccessDenied.
"""

from __future__ import annotations

import json
from typing import Any

from local.rehearsal.checks import check_template, functions
from local.rehearsal.evaluate import Evaluator, Scenario, scenarios
from local.rehearsal.moto_deploy import rehearse
from local.rehearsal.translate import ROOT
from tests.rehearsal.conftest import CREATED_CACHE_SECRET, CREATED_DATABASE_SECRET


def _defaults(template: dict[str, Any]) -> list[Scenario]:
    return [scenario for scenario in scenarios(template) if scenario.name == "defaults"]


def _without_managed_policy(template: dict[str, Any], role: str, policy: str) -> None:
    arns = template["Resources"][role]["Properties"]["ManagedPolicyArns"]
    kept = [arn for arn in arns if json.dumps({"Ref": policy}) not in json.dumps(arn)]
    assert len(kept) == len(arns) - 1
    arns[:] = kept


def test_the_defaults_create_network_database_cache_and_secrets(translated: dict[str, Any]) -> None:
    evaluator = Evaluator(translated, _defaults(translated)[0])
    for created in ("Vpc", "NatGatewayA", "DatabaseCluster", "DatabaseProxy", "DatabaseSecret", "Cache"):
        assert evaluator.exists(created), created
    assert evaluator.exists("CacheAuthSecret")
    assert evaluator.properties("HealthFunction")["Environment"]["Variables"]["DB_SECRET_ARN"] == (
        CREATED_DATABASE_SECRET
    )


def test_every_function_of_the_code_is_rehearsed(translated: dict[str, Any]) -> None:
    # Each folder under functions/ is a function of the template whose code the rehearsal derives needs from
    rehearsed = {function.logical_id for function in functions(translated)}
    folders = {path.name for path in (ROOT / "functions").iterdir() if path.is_dir() and not path.name.startswith("_")}
    assert len(rehearsed) == len(folders) == 33
    assert {"MigrateDatabaseFunction", "PruneDataFunction"} <= rehearsed


def test_the_created_stack_passes_the_static_checks(translated: dict[str, Any]) -> None:
    assert check_template(translated, only=_defaults(translated)) == []


def test_the_created_stack_starts_every_function_in_moto(translated: dict[str, Any]) -> None:
    assert rehearse(translated, only=_defaults(translated)) == []


def test_the_cache_auth_read_policy_removed_from_one_function_is_reported_for_it(template: dict[str, Any]) -> None:
    _without_managed_policy(template, "CollectionNftsFunctionRole", "CacheAuthSecretReadPolicy")
    findings = check_template(template)
    assert {(finding.subject, finding.resource) for finding in findings if finding.scenario == "defaults"} == {
        ("CollectionNftsFunction", CREATED_CACHE_SECRET)
    }
    assert {finding.subject for finding in findings} == {"CollectionNftsFunction"}
    failed = rehearse(template, only=_defaults(template), functions_named={"CollectionNftsFunction"})
    assert [start.function for start in failed] == ["[defaults] CollectionNftsFunction"]
    assert "such-market/prod/cache-auth" in str(failed[0].error)


def test_the_database_read_policy_removed_is_reported_and_refused_by_moto(template: dict[str, Any]) -> None:
    _without_managed_policy(template, "MigrateDatabaseFunctionRole", "DatabaseSecretReadPolicy")
    findings = check_template(template, only=_defaults(template))
    assert {(finding.subject, finding.resource) for finding in findings} == {
        ("MigrateDatabaseFunction", CREATED_DATABASE_SECRET)
    }
    failed = rehearse(template, only=_defaults(template), functions_named={"MigrateDatabaseFunction"})
    assert [start.function for start in failed] == ["[defaults] MigrateDatabaseFunction"]
    # BatchGetSecretValue leaves out the secret it may not read (AWS answers AccessDeniedException for it)
    assert "such-market/prod/database" in str(failed[0].error)
    assert "could not be read (missing or not allowed)" in str(failed[0].error)


def test_a_created_security_group_without_its_ingress_is_reported(template: dict[str, Any]) -> None:
    resources = template["Resources"]
    del resources["DatabaseSecurityGroup"]["Properties"]["SecurityGroupIngress"]
    del resources["CacheSecurityGroup"]["Properties"]["SecurityGroupIngress"]
    findings = check_template(template, only=_defaults(template))
    problems = {(finding.subject, finding.problem) for finding in findings}
    assert ("DatabaseProxy", "cannot reach DatabaseCluster on 5432 (no ingress from its security groups)") in problems
    # every function (all are in the VPC) loses the cache; none loses the proxy
    assert {finding.subject for finding in findings} == {"DatabaseProxy"} | {
        function.logical_id for function in functions(template)
    }
    assert {finding.resource for finding in findings} == {"sg-DatabaseSecurityGroup", "sg-CacheSecurityGroup"}


def test_the_proxy_ingress_on_the_wrong_port_is_reported_for_every_function(template: dict[str, Any]) -> None:
    ingress = template["Resources"]["DatabaseProxySecurityGroup"]["Properties"]["SecurityGroupIngress"][0]
    ingress["FromPort"] = ingress["ToPort"] = 6379
    findings = check_template(template, only=_defaults(template))
    assert {finding.problem for finding in findings} == {
        "cannot reach DatabaseProxy on 5432 (no ingress from its security groups)"
    }
    assert len(findings) == len(functions(template))


def test_a_function_without_its_log_group_is_reported(template: dict[str, Any]) -> None:
    del template["Resources"]["PruneDataLogGroup"]
    findings = check_template(template, only=_defaults(template))
    assert [(finding.subject, finding.problem) for finding in findings] == [
        ("PruneDataFunction", "logs to a group the template does not manage (no retention)")
    ]
