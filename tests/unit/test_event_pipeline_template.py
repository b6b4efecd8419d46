"""The template's event pipeline: who may write to the events dead-letter queue, and the retries that
decide how long a failed invalidation waits (docs/architecture.md#under-faults)."""

from __future__ import annotations

from typing import Any

import pytest
import redrive_dead_letters

from local.scheduler import rate_seconds
from local.template import DEFAULT_TEMPLATE, load_yaml
from such_market.deadline import SAFETY_MARGIN_SECONDS

DLQ = "EventsDeadLetterQueue"


@pytest.fixture(scope="module")
def resources() -> dict[str, Any]:
    resources: dict[str, Any] = load_yaml(DEFAULT_TEMPLATE)["Resources"]
    return resources


def _rules_dead_lettering_to_the_dlq(resources: dict[str, Any]) -> set[str]:
    """The logical ids SAM gives the rules (``<Function><Event>``) whose target dead-letters to the DLQ."""
    found = set()
    for function_id, resource in resources.items():
        for event_name, event in (resource.get("Properties", {}).get("Events") or {}).items():
            target = (event.get("Properties", {}).get("DeadLetterConfig") or {}).get("Arn")
            if event.get("Type") == "EventBridgeRule" and target == {"Fn::GetAtt": [DLQ, "Arn"]}:
                found.add(function_id + event_name)
    return found


def test_only_our_rules_may_send_to_the_dead_letter_queue(resources: dict[str, Any]) -> None:
    statements = resources["EventsDeadLetterQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    for statement in statements:
        assert statement["Effect"] == "Allow"
        assert statement["Principal"] == {"Service": "events.amazonaws.com"}
        allowed = statement["Condition"]["ArnEquals"]["aws:SourceArn"]
        names = {arn["Fn::GetAtt"][0] for arn in allowed}
        assert all(arn["Fn::GetAtt"][1] == "Arn" for arn in allowed)
        assert names == _rules_dead_lettering_to_the_dlq(resources)
    assert len(_rules_dead_lettering_to_the_dlq(resources)) >= 4


def test_a_failed_invalidation_goes_to_the_dead_letters_without_platform_retries(resources: dict[str, Any]) -> None:
    function = resources["InvalidateCacheFunction"]["Properties"]
    assert function["EventInvokeConfig"]["MaximumRetryAttempts"] == 0
    assert function["EventInvokeConfig"]["DestinationConfig"]["OnFailure"]["Destination"] == {
        "Fn::GetAtt": [DLQ, "Arn"]
    }
    assert function["Events"]["Changes"]["Properties"]["RetryPolicy"]["MaximumRetryAttempts"] == 0


def test_redrive_runs_follow_each_other_without_overlapping(resources: dict[str, Any]) -> None:
    function = resources["RedriveDeadLettersFunction"]["Properties"]
    period = rate_seconds(function["Events"]["EveryMinute"]["Properties"]["ScheduleExpression"])
    assert period == 60
    budget = redrive_dead_letters.DEFAULT_BUDGET_SECONDS
    assert budget + SAFETY_MARGIN_SECONDS <= function["Timeout"] <= period
    assert period - budget <= 5  # the gap in which no run is watching the cache
