"""Every sample in events/ goes through its handler.

A file is named ``<function>[_<case>].json`` after the handler module it belongs to, or
``event_<detail_type>.json`` for a sample of an event on the bus: that one must be a valid event and
goes through every function whose rule in template.yaml matches it. A new sample is picked up here
automatically; a sample that names no handler fails the test.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import pytest

from local.bus import matches_pattern
from local.template import Template
from such_market.events.models import Event
from tests.conftest import MotoBus
from tests.functions.conftest import FakeContext

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = sorted((ROOT / "events").glob("*.json"))
HANDLERS = sorted((path.name for path in (ROOT / "functions").iterdir() if path.is_dir()), key=len, reverse=True)


def handler_module_for(sample: Path) -> str:
    """The longest handler module name that the sample's name starts with."""
    for name in HANDLERS:
        if sample.stem == name or sample.stem.startswith(name + "_"):
            return name
    raise AssertionError(f"events/{sample.name} names no handler in functions/")


@pytest.fixture
def aws(lambda_env: dict[str, str], moto_bus: MotoBus) -> MotoBus:
    """Handler environment plus a mocked EventBridge bus (for handlers that publish)."""
    return moto_bus


BUS_SAMPLES = [path for path in SAMPLES if path.stem.startswith("event_")]


@pytest.mark.parametrize("sample", BUS_SAMPLES, ids=lambda p: p.name)
def test_bus_sample_is_a_valid_event(sample: Path) -> None:
    event = Event.from_eventbridge(json.loads(sample.read_text()))
    assert sample.stem == "event_" + event.detail_type.replace(".", "_")


@pytest.mark.parametrize("sample", BUS_SAMPLES, ids=lambda p: p.name)
def test_bus_sample_runs_through_every_consumer_whose_rule_matches(
    sample: Path, aws: MotoBus, context: FakeContext
) -> None:
    template = Template.load(ROOT / "template.yaml")
    event = json.loads(sample.read_text())
    for rule in template.rules:
        if matches_pattern(rule.pattern, event):
            module = importlib.import_module(template.function(rule.function_id).handler_module)
            module.lambda_handler(event, context)  # raises on failure, as Lambda would report it


@pytest.mark.parametrize(
    "sample", [path for path in SAMPLES if not path.stem.startswith("event_")], ids=lambda p: p.name
)
def test_sample_runs_through_its_handler(sample: Path, aws: MotoBus, context: FakeContext) -> None:
    # Given the handler module the sample is named after
    module = importlib.import_module(handler_module_for(sample))
    # When the sample event is handled
    result: Any = module.lambda_handler(json.loads(sample.read_text()), context)
    # Then the handler answered without a server error
    if isinstance(result, dict) and "statusCode" in result:
        assert result["statusCode"] < 500, result
        json.loads(result["body"])
    else:
        assert result is not None


def samples_of(template: Template, function_id: str) -> list[Path]:
    """The samples of one function: those named after its handler module, and for a consumer of the
    bus, every bus sample one of its rules matches."""
    module = template.function(function_id).handler_module
    named = [path for path in SAMPLES if not path.stem.startswith("event_") and handler_module_for(path) == module]
    rules = [rule for rule in template.rules if rule.function_id == function_id]
    delivered = [
        path
        for path in BUS_SAMPLES
        if any(matches_pattern(rule.pattern, json.loads(path.read_text())) for rule in rules)
    ]
    return named + delivered


def test_every_function_of_the_template_has_a_sample() -> None:
    # Given every function template.yaml declares (read from it: a new function is covered at once)
    template = Template.load(ROOT / "template.yaml")
    # Then each has a sample in events/ to `sam local invoke -e` it with
    missing = [function_id for function_id in template.functions if not samples_of(template, function_id)]
    assert not missing, f"no events/<handler module>[_<case>].json (or matching bus sample) for {missing}"
