"""``python -m local.invoke``: every sample in events/ through its function, the way ``sam local invoke``
runs it (function chosen by logical id from template.yaml, flags as sam's, the response on stdout).

The samples of a function are found as in test_event_files (named after its handler module, or a bus
sample its rule matches), so a new function or sample is covered here without a change.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from local.invoke import CONTAINER_HOST, container_env_vars, main
from local.template import Template
from tests.conftest import MotoBus
from tests.functions.test_event_files import ROOT, samples_of

TEMPLATE = Template.load(ROOT / "template.yaml")
INVOCATIONS = [
    pytest.param(function_id, sample, id=f"{function_id}-{sample.name}")
    for function_id in TEMPLATE.functions
    for sample in samples_of(TEMPLATE, function_id)
]


@pytest.fixture
def environment(lambda_env: dict[str, str], moto_bus: MotoBus) -> Iterator[None]:
    """The test's database, cache, stubs and mocked bus; ``os.environ`` restored afterwards (an invocation
    makes it the function's, as a container's would be)."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def _invoke(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, json.loads(captured.out), captured.err


@pytest.mark.parametrize(("function_id", "sample"), INVOCATIONS)
def test_every_sample_runs_through_local_invoke(
    function_id: str, sample: Path, environment: None, capsys: pytest.CaptureFixture[str]
) -> None:
    # When the sample is invoked as `python -m local.invoke <LogicalId> -e events/<file>.json`
    status, response, log = _invoke(capsys, function_id, "-e", str(sample))
    # Then the function answered (no Lambda error object), as sam prints it, with sam's log lines
    assert status == 0, response
    assert "errorType" not in (response if isinstance(response, dict) else {}), response
    if isinstance(response, dict) and "statusCode" in response:
        assert response["statusCode"] < 500, response
    assert "START RequestId:" in log
    assert "REPORT RequestId:" in log


def test_the_env_vars_file_of_make_dev_reaches_the_services(
    environment: None, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Given the env-vars file make dev would write for these services (as a container reaches them)
    env_vars = container_env_vars(dict(os.environ), TEMPLATE)
    assert CONTAINER_HOST in env_vars["Parameters"]["DATABASE_URL"]
    assert env_vars["Parameters"]["DB_SECRET_ARN"] == ""
    path = tmp_path / "env.json"
    path.write_text(json.dumps(env_vars))
    for name in ("DATABASE_URL", "REDIS_URL"):
        os.environ[name] = "postgresql://nowhere.invalid/x" if name == "DATABASE_URL" else "redis://nowhere.invalid"
    # When a function is invoked with it (the shell's own values pointing nowhere)
    status, response, _ = _invoke(capsys, "HealthFunction", "-e", "events/health.json", "--env-vars", str(path))
    # Then the file wins, and its host.docker.internal is this host: the health check passes
    assert status == 0, response
    assert response["statusCode"] == 200, response


def test_a_handler_failure_prints_the_lambda_error_object(
    environment: None, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Given an event the function cannot handle (an HTTP API function gets a list)
    event = tmp_path / "broken.json"
    event.write_text("[]")
    # When it is invoked
    status, response, _ = _invoke(capsys, "HealthFunction", "-e", str(event), "-t", str(ROOT / "template.yaml"))
    # Then what is printed is Lambda's error object, and the exit status says it failed
    assert status == 1
    assert set(response) == {"errorMessage", "errorType", "requestId", "stackTrace"}
