"""The local runtime's reading of template.yaml, and of schedule expressions."""

from __future__ import annotations

import json
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from local.api import Router
from local.bus import validate_pattern
from local.scheduler import CronExpression, ScheduleError, next_run, rate_seconds, scheduled_event
from local.template import (
    ADMIN_AUTHORIZER,
    CloudFormationLoader,
    RouteSpec,
    Template,
    load_yaml,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def template() -> Template:
    return Template.load(ROOT / "template.yaml")


def test_short_tags_become_their_long_forms() -> None:
    # Given YAML with CloudFormation short tags
    text = """
    a: !Ref Param
    b: !GetAtt Fn.Arn
    c: !Sub "x-${Stage}"
    d: !If [Cond, !Ref A, !Ref AWS::NoValue]
    e: !Not [!Equals [!Ref P, ""]]
    f: !Join [",", [a, b]]
    """
    # When it is loaded
    document = yaml.load(text, Loader=CloudFormationLoader)  # noqa: S506 - a SafeLoader subclass
    # Then each tag is the JSON form CloudFormation uses
    assert document == {
        "a": {"Ref": "Param"},
        "b": {"Fn::GetAtt": ["Fn", "Arn"]},
        "c": {"Fn::Sub": "x-${Stage}"},
        "d": {"Fn::If": ["Cond", {"Ref": "A"}, {"Ref": "AWS::NoValue"}]},
        "e": {"Fn::Not": [{"Fn::Equals": [{"Ref": "P"}, ""]}]},
        "f": {"Fn::Join": [",", ["a", "b"]]},
    }


def test_the_real_template_parses_with_functions_whose_code_exists(template: Template) -> None:
    # Given the project's template
    # Then it has functions, and each one's code directory and handler file exist
    assert template.functions
    assert load_yaml(ROOT / "template.yaml")["Transform"] == "AWS::Serverless-2016-10-31"
    for function in template.functions.values():
        assert function.code_dir.is_dir(), f"{function.logical_id}: {function.code_dir} is missing"
        assert function.handler_file.is_file(), f"{function.logical_id}: {function.handler_file} is missing"
        assert function.handler_attribute == "lambda_handler"
        assert function.code_dir.parent == ROOT / "functions"
        assert function.handler_module == function.code_dir.name, "handler modules are named after their folder"


def test_every_handler_module_name_is_unique(template: Template) -> None:
    # Given every function of the template
    modules = [function.handler_module for function in template.functions.values()]
    # Then no two share a module name (tests import them all in one process)
    assert len(modules) == len(set(modules))


def test_every_function_folder_is_on_the_pytest_pythonpath(template: Template) -> None:
    # Given pyproject's pytest configuration and the functions folder
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pythonpath = set(config["tool"]["pytest"]["ini_options"]["pythonpath"])
    folders = {f"functions/{path.name}" for path in (ROOT / "functions").iterdir() if path.is_dir()}
    folders.discard("functions/__pycache__")
    # Then every function folder is importable by its module name in tests
    missing = sorted(folders - pythonpath)
    assert not missing, f"add to [tool.pytest.ini_options].pythonpath: {missing}"
    assert "layers/shared" in pythonpath
    # And every template function lives in one of those folders
    for function in template.functions.values():
        assert f"functions/{function.code_dir.name}" in folders


def test_routes_are_read_with_their_authorizers(template: Template) -> None:
    # Given the template's HTTP API routes
    routes = {route.route_key: route for route in template.routes}
    # Then the health route is public and the admin routes use the admin authorizer function
    assert "GET /api/health" in routes
    assert routes["GET /api/health"].authorizer is None
    admin = [route for key, route in routes.items() if key.split(" ", 1)[1].startswith("/api/admin/")]
    assert admin
    for route in admin:
        assert route.uses_admin_authorizer
        assert route.authorizer == ADMIN_AUTHORIZER
        assert route.authorizer_function_id == "AdminAuthorizerFunction"
        assert route.identity_headers == ("Authorization",)
        assert route.authorizer_function_id in template.functions
    for route in template.routes:
        assert route.function_id in template.functions


def test_rules_have_valid_patterns_and_schedules_valid_expressions(template: Template) -> None:
    # Given the template's event rules and schedules
    # Then each pattern is one EventBridge accepts and each schedule expression is understood
    for rule in template.rules:
        validate_pattern(rule.pattern)
        assert rule.function_id in template.functions
    assert template.schedules
    for schedule in template.schedules:
        assert schedule.function_id in template.functions
        next_run(schedule.expression, datetime.now(UTC))


def test_outbox_relay_runs_every_minute_without_retries(template: Template) -> None:
    # Given the outbox relay's schedule
    (relay,) = [s for s in template.schedules if s.function_id == "OutboxRelayFunction"]
    # Then it is a ScheduleV2 every minute with no retries
    assert relay.kind == "ScheduleV2"
    assert rate_seconds(relay.expression) == 60
    assert relay.retry_attempts == 0


def test_environment_keeps_resolvable_values_only(template: Template) -> None:
    # Given the template's global environment
    environment = template.global_environment
    # Then parameter defaults are resolved and values only AWS knows are left out
    assert environment["EVENT_BUS_NAME"] == "such-market"
    assert environment["POWERTOOLS_SERVICE_NAME"] == "such-market"
    assert "DB_SECRET_ARN" not in environment
    assert "DB_HOST_OVERRIDE" not in environment
    assert "REDIS_HOST" not in environment


def test_router_prefers_exact_paths_and_matches_parameters() -> None:
    # Given exact, templated and greedy routes
    router = Router(
        [
            RouteSpec("GET", "/api/{proxy+}", "Greedy"),
            RouteSpec("GET", "/api/collections/{address}", "Collection"),
            RouteSpec("GET", "/api/collections/top", "Top"),
            RouteSpec("ANY", "/api/collections/{address}/nfts", "Nfts"),
        ]
    )
    # When paths are matched
    # Then exact wins, parameters are captured, the greedy route takes the rest, methods count
    top = router.match("GET", "/api/collections/top")
    assert top is not None
    assert top.route.function_id == "Top"
    one = router.match("GET", "/api/collections/0xabc")
    assert one is not None
    assert (one.route.function_id, one.path_parameters) == ("Collection", {"address": "0xabc"})
    nfts = router.match("POST", "/api/collections/0xabc/nfts")
    assert nfts is not None
    assert nfts.route.function_id == "Nfts"
    rest = router.match("GET", "/api/a/b/c")
    assert rest is not None
    assert (rest.route.function_id, rest.path_parameters) == ("Greedy", {"proxy": "a/b/c"})
    assert router.match("POST", "/api/collections/top") is None
    assert router.match("GET", "/other") is None


@pytest.mark.parametrize(
    ("expression", "seconds"),
    [("rate(1 minute)", 60), ("rate(5 minutes)", 300), ("rate(2 hours)", 7200), ("rate(1 day)", 86400)],
)
def test_rate_expressions(expression: str, seconds: int) -> None:
    assert rate_seconds(expression) == seconds


@pytest.mark.parametrize("expression", ["rate(1 minutes)", "rate(5 minute)", "rate(0 minutes)", "rate(x)"])
def test_malformed_rate_expressions_are_refused(expression: str) -> None:
    with pytest.raises(ScheduleError):
        rate_seconds(expression)


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("cron(0 * * * ? *)", "2026-03-10T10:15:00", "2026-03-10T11:00:00"),
        ("cron(*/15 * * * ? *)", "2026-03-10T10:15:00", "2026-03-10T10:30:00"),
        ("cron(30 2 1 * ? *)", "2026-03-10T10:15:00", "2026-04-01T02:30:00"),
        ("cron(0 9 ? * MON-FRI *)", "2026-03-13T09:00:00", "2026-03-16T09:00:00"),  # Friday → Monday
        ("cron(0 12 ? * 1 *)", "2026-03-10T00:00:00", "2026-03-15T12:00:00"),  # 1 = Sunday
        ("cron(0 0 29 FEB ? *)", "2026-03-01T00:00:00", "2028-02-29T00:00:00"),
        ("cron(5,10 8 * JAN,JUL ? 2027)", "2026-03-10T00:00:00", "2027-01-01T08:05:00"),
    ],
)
def test_cron_next_run(expression: str, after: str, expected: str) -> None:
    # Given a cron expression and a moment
    moment = datetime.fromisoformat(after).replace(tzinfo=UTC)
    # When the next run is computed
    # Then it is the first allowed minute after the moment
    assert next_run(expression, moment) == datetime.fromisoformat(expected).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    "expression", ["cron(0 0 L * ? *)", "cron(0 0 ? * 6#3 *)", "cron(0 0 * *)", "cron(61 * * * ? *)"]
)
def test_unsupported_cron_expressions_are_refused(expression: str) -> None:
    with pytest.raises(ScheduleError):
        CronExpression.parse(expression)


def test_scheduled_events_have_the_shape_of_the_sample_event(template: Template) -> None:
    # Given the outbox relay's schedule and its sample event in events/
    (relay,) = [s for s in template.schedules if s.function_id == "OutboxRelayFunction"]
    sample = json.loads((ROOT / "events" / "outbox_relay.json").read_text())
    # When the local scheduler builds the event of a run
    event = scheduled_event(relay, account_id="123456789012", region="us-east-1")
    # Then it has the sample's fields and fixed values
    assert set(event) == set(sample)
    for field in ("version", "detail-type", "source", "account", "region", "detail"):
        assert event[field] == sample[field], field
    assert event["resources"][0].startswith("arn:aws:scheduler:us-east-1:123456789012:schedule/default/")
