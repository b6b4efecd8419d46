"""The rehearsal's deployment into moto with IAM enforced: every function starts under its own role, and a
function whose grant is removed is refused by moto (AccessDenied) where its cold start reaches AWS.

Moto creates only the IAM-relevant part of the stack (secrets, bus, queue, policies, roles; see
``local.rehearsal.moto_deploy`` for what it cannot create - Lambda, layers, VPC, Aurora, RDS Proxy,
ElastiCache Serverless, the HTTP API and its authorizer, rules and schedules - and the static check that
covers each). A cold start here is the function's settings loaded, every secret they reference read
through ``such_market.secrets`` (one ``BatchGetSecretValue``), the database DSN and cache credentials read
out of their secrets, a harmless ``PutEvents`` on its bus and its queue's depth, with the credentials of its
assumed role.
"""

from __future__ import annotations

from typing import Any

from local.rehearsal.evaluate import scenarios
from local.rehearsal.moto_deploy import rehearse


def test_every_function_starts_under_its_own_role(translated: dict[str, Any]) -> None:
    assert rehearse(translated) == []


def _everything_given(template: dict[str, Any]) -> list[Any]:
    return [scenario for scenario in scenarios(template) if scenario.name == "everything given"]


def test_a_function_without_its_database_secret_grant_cannot_read_it(template: dict[str, Any]) -> None:
    arns = template["Resources"]["CollectionNftsFunctionRole"]["Properties"]["ManagedPolicyArns"]
    arns[:] = [arn for arn in arns if arn != {"Ref": "DatabaseSecretReadPolicy"}]
    failed = rehearse(template, only=_everything_given(template), functions_named={"CollectionNftsFunction"})
    # BatchGetSecretValue leaves out the secret it may not read (AWS answers AccessDeniedException for it)
    assert [(start.function, start.error) for start in failed] == [
        (
            "[everything given] CollectionNftsFunction",
            "ConfigurationError: secret rehearsal/db-secret-arn-" + failed[0].error.rsplit("-", 1)[-1],  # type: ignore[union-attr] - moto's random suffix
        )
    ]
    assert "could not be read (missing or not allowed)" in str(failed[0].error)


def test_the_cache_auth_secret_granted_to_no_function_stops_every_cache_client(template: dict[str, Any]) -> None:
    # (its statement on another secret: IAM refuses a policy without one)
    (statement,) = template["Resources"]["CacheAuthSecretReadPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    statement["Resource"] = "arn:aws:secretsmanager:us-east-1:123456789012:secret:another-AbCdEf"
    wanted = {"HealthFunction", "OutboxRelayFunction"}
    failed = rehearse(template, only=_everything_given(template), functions_named=wanted)
    assert [start.function for start in failed] == ["[everything given] HealthFunction"]
    assert "rehearsal/cache-auth-secret-arn" in str(failed[0].error)


def test_a_publisher_without_put_events_is_refused_by_moto(template: dict[str, Any]) -> None:
    policies = template["Resources"]["OutboxRelayFunctionRole"]["Properties"]["Policies"]
    policies[:] = [policy for policy in policies if "events:PutEvents" not in str(policy)]
    failed = rehearse(template, only=_everything_given(template), functions_named={"OutboxRelayFunction"})
    assert len(failed) == 1
    assert "AccessDenied" in str(failed[0].error)
    assert "events:PutEvents" in str(failed[0].error)


def test_a_queue_reader_without_its_queue_grant_is_refused_by_moto(template: dict[str, Any]) -> None:
    policies = template["Resources"]["CacheMetricsFunctionRole"]["Properties"]["Policies"]
    policies[:] = [policy for policy in policies if "sqs:" not in str(policy)]
    failed = rehearse(template, only=_everything_given(template), functions_named={"CacheMetricsFunction"})
    assert len(failed) == 1
    assert "AccessDenied" in str(failed[0].error)
    assert "GetQueueAttributes" in str(failed[0].error)


def test_a_created_database_secret_without_the_username_the_code_reads_stops_the_cold_start(
    template: dict[str, Any],
) -> None:
    # Given the generated database secret's template without its username
    generate = template["Resources"]["DatabaseSecret"]["Properties"]["GenerateSecretString"]
    generate["SecretStringTemplate"] = '{"dbname": "such_market"}'
    defaults = [scenario for scenario in scenarios(template) if scenario.name == "defaults"]
    failed = rehearse(template, only=defaults, functions_named={"HealthFunction", "OutboxRelayFunction"})
    # Then every reader of the database fails where the code builds its DSN out of the secret
    assert [(start.function, start.error) for start in failed] == [
        ("[defaults] HealthFunction", "KeyError: 'username'"),
        ("[defaults] OutboxRelayFunction", "KeyError: 'username'"),
    ]
