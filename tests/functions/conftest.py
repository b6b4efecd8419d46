"""Helpers for calling handlers the way Lambda does: with an events/ file or a built HTTP API v2 event."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

EVENTS = Path(__file__).resolve().parents[2] / "events"


class FakeContext:
    """The attributes of a LambdaContext our handlers and Powertools read."""

    function_name = "test-function"
    function_version = "$LATEST"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:test-function"
    aws_request_id = "00000000-0000-4000-8000-000000000000"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 10_000


def load_event(name: str) -> dict[str, Any]:
    """A copy of ``events/<name>.json``."""
    return copy.deepcopy(json.loads((EVENTS / f"{name}.json").read_text()))


@pytest.fixture
def context() -> FakeContext:
    return FakeContext()


@dataclass
class Reply:
    """A response of the local API, decoded."""

    status: int
    headers: dict[str, str]
    body: Any

    @property
    def cache(self) -> str | None:
        return self.headers.get("x-cache")


@pytest.fixture
def api(lambda_env: dict[str, str]) -> Callable[..., Reply]:
    """Call the API in-process exactly as ``make dev`` serves it: routes and events from template.yaml."""
    from local.api import IncomingRequest, LocalApi
    from local.invoker import Invoker
    from local.template import Template

    template = Template.load()
    local = LocalApi(template, Invoker(template), quiet=True)

    def call(method: str, target: str, headers: Sequence[tuple[str, str]] = (), body: bytes = b"") -> Reply:
        response = local.handle(IncomingRequest(method=method, target=target, headers=list(headers), body=body))
        decoded = {name.lower(): value for name, value in response.headers}
        return Reply(response.status, decoded, json.loads(response.body) if response.body else None)

    return call
