"""The environment ``make dev`` gives the functions: the shell beats the local defaults, which beat the
template's; only what dev itself runs (database, cache, bus, AWS identity, a stub it started) is its own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from local.alchemy_stub import AlchemyStub
from local.dev import EVENT_BUS_NAME, function_environment, needs_stub
from local.neynar_stub import NeynarStub
from local.template import Template

ROOT = Path(__file__).resolve().parents[2]
BUS_URL = "http://127.0.0.1:4010"


@pytest.fixture(scope="module")
def template() -> Template:
    return Template.load(ROOT / "template.yaml")


@pytest.fixture(scope="module")
def stubs() -> Iterator[tuple[AlchemyStub, NeynarStub]]:
    with AlchemyStub() as alchemy, NeynarStub() as neynar:
        yield alchemy, neynar


def environment(
    template: Template,
    shell: dict[str, str],
    *,
    alchemy_stub: AlchemyStub | None = None,
    neynar_stub: NeynarStub | None = None,
) -> dict[str, str]:
    return function_environment(
        template,
        shell=shell,
        database_url="postgresql://postgres@127.0.0.1:5433/postgres",
        redis_url="redis://127.0.0.1:6380/0",
        bus_url=BUS_URL,
        admin_token="run-admin-token",
        webhook_signing_key="run-signing-key",
        alchemy_stub=alchemy_stub,
        neynar_stub=neynar_stub,
    )


def test_without_the_shell_local_defaults_beat_the_template(template: Template) -> None:
    # Given a template defaulting to cluster mode, TLS and the real Neynar
    assert template.global_environment["REDIS_CLUSTER"] == "true"
    assert template.global_environment["REDIS_TLS"] == "true"
    # When the user sets nothing
    env = environment(template, {})
    # Then the local defaults replace the template's, and the rest of the template's values stay
    assert (env["REDIS_CLUSTER"], env["REDIS_TLS"], env["POWERTOOLS_TRACE_DISABLED"]) == ("false", "false", "true")
    assert env["ADMIN_TOKEN"] == "run-admin-token"
    assert env["ALCHEMY_WEBHOOK_SIGNING_KEY"] == "run-signing-key"
    assert env["NEYNAR_BASE_URL"] == template.global_environment["NEYNAR_BASE_URL"]
    assert env["POWERTOOLS_LOG_LEVEL"] == template.global_environment["POWERTOOLS_LOG_LEVEL"]


def test_the_shell_beats_the_template_and_the_local_defaults(template: Template) -> None:
    # Given a user pointing the API at another Neynar, at a Valkey cluster, with their own token and level
    shell = {
        "NEYNAR_BASE_URL": "http://neynar-proxy.internal:8080",
        "NEYNAR_API_KEY": "users-neynar-key",
        "REDIS_CLUSTER": "true",
        "REDIS_TLS": "true",
        "ADMIN_TOKEN": "users-admin-token-0123456789",
        "POWERTOOLS_LOG_LEVEL": "DEBUG",
        "CACHE_PREFIX": "mine",
    }
    # When dev builds the functions' environment
    env = environment(template, shell)
    # Then every one of their values wins
    assert {name: env[name] for name in shell} == shell


def test_what_dev_runs_is_not_the_shells_to_move(template: Template) -> None:
    # Given a shell carrying another bus, real-looking AWS credentials and secrets' ARNs
    shell = {
        "EVENT_BUS_NAME": "prod-bus",
        "EVENTBRIDGE_ENDPOINT_URL": "https://events.eu-west-1.amazonaws.com",
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
        "AWS_REGION": "eu-west-1",
        "NEYNAR_API_KEY_SECRET_ARN": "arn:aws:secretsmanager:eu-west-1:1:secret:neynar",
    }
    env = environment(template, shell)
    # Then the functions publish to the local bus, sign as nobody and read no secret from AWS
    assert (env["EVENT_BUS_NAME"], env["EVENTBRIDGE_ENDPOINT_URL"]) == (EVENT_BUS_NAME, BUS_URL)
    assert (env["AWS_ACCESS_KEY_ID"], env["AWS_REGION"]) == ("local", "us-east-1")
    assert not [name for name in env if name.endswith("_SECRET_ARN")]


def test_each_stub_gives_its_own_url_and_key(template: Template, stubs: tuple[AlchemyStub, NeynarStub]) -> None:
    alchemy, neynar = stubs
    # When both upstreams are served by their stubs
    env = environment(template, {}, alchemy_stub=alchemy, neynar_stub=neynar)
    # Then each upstream gets its stub's address and that stub's own key, and the two keys differ
    assert (env["ALCHEMY_BASE_URL"], env["ALCHEMY_API_KEY"]) == (alchemy.base_url, alchemy.api_key)
    assert (env["NEYNAR_BASE_URL"], env["NEYNAR_API_KEY"]) == (neynar.base_url, neynar.api_key)
    assert env["ALCHEMY_API_KEY"] != env["NEYNAR_API_KEY"]


@pytest.mark.parametrize(
    ("shell", "stubbed"),
    [
        ({}, {"ALCHEMY", "NEYNAR"}),
        ({"ALCHEMY_API_KEY": "real"}, {"NEYNAR"}),
        ({"NEYNAR_BASE_URL": "http://neynar-proxy.internal:8080"}, {"ALCHEMY"}),
        ({"NEYNAR_API_KEY": "real", "ALCHEMY_BASE_URL": "http://127.0.0.1:9999"}, set()),
        ({"ALCHEMY_API_KEY": "", "NEYNAR_API_KEY_SECRET_ARN": "arn:aws:secretsmanager:x"}, {"ALCHEMY", "NEYNAR"}),
    ],
)
def test_a_stub_stands_in_only_for_an_upstream_the_shell_leaves_unset(shell: dict[str, str], stubbed: set[str]) -> None:
    assert {upstream for upstream in ("ALCHEMY", "NEYNAR") if needs_stub(shell, upstream)} == stubbed
