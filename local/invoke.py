"""``sam local invoke`` without Docker: one function of the template, called in this process.

    python -m local.invoke <FunctionLogicalId> -e events/<file>.json [--env-vars <file>] [-t template.yaml]

takes the flags of ``sam local invoke`` that matter here (``-e/--event``, ``-`` for stdin, or ``--no-event``
for ``{}``; ``-n/--env-vars``; ``-t/--template``), calls the function through ``local.invoker`` (the
handler imported from its ``CodeUri`` with the layer on ``sys.path``, a Lambda context with the
function's memory and timeout, Lambda's JSON round trip), and prints what ``sam local invoke`` prints: the
``START``/``END``/``REPORT`` lines and the function's own output (its logs) on stderr, and the response as
one line of JSON on stdout, or Lambda's
``{"errorMessage", "errorType", "requestId", "stackTrace"}`` when the handler raised (then the exit status
is 1, where sam's is 0).

The environment, as SAM builds it, from lowest to highest precedence: the template's values (``Globals``
and the function's own), the local runtime's defaults (``local.invoker.LOCAL_DEFAULTS``), the shell, and
the env-vars file (SAM's format: ``{"Parameters": {...}}`` for every function, ``{"<LogicalId>": {...}}``
for one, which wins). ``make dev`` writes such a file (``ENV_VARS_FILE``) pointing at its own services
through ``host.docker.internal``, the host as a container sees it; in this process that name is the host
itself, so it becomes ``127.0.0.1``. Unlike SAM, variables the template does not declare are passed too,
and ``*_SECRET_ARN`` variables are dropped (secrets are plain values locally).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from local.invoker import LOCAL_AWS, Invoker, local_environment
from local.template import DEFAULT_TEMPLATE, ROOT, Template

ENV_VARS_FILE = ROOT / ".local" / "sam-env-vars.json"
"""Where ``make dev`` writes the env-vars file of its services (git-ignored: it holds this run's token)."""
CONTAINER_HOST = "host.docker.internal"
"""How a ``sam local invoke`` container reaches the host (Docker Desktop; on Linux see
docs/api.md#invoking-one-function-sam-local-invoke)."""

SAM_VARIABLES = (
    "DATABASE_URL",
    "REDIS_URL",
    "REDIS_CLUSTER",
    "REDIS_TLS",
    "EVENT_BUS_NAME",
    "EVENTBRIDGE_ENDPOINT_URL",
    "SQS_ENDPOINT_URL",
    "EVENTS_DLQ_URL",
    "ADMIN_TOKEN",
    "ALCHEMY_API_KEY",
    "ALCHEMY_BASE_URL",
    "ALCHEMY_WEBHOOK_SIGNING_KEY",
    "NEYNAR_API_KEY",
    "NEYNAR_BASE_URL",
    "POWERTOOLS_LOG_LEVEL",
)
"""What the env-vars file of ``make dev`` sets (each declared in the template, or SAM would drop it)."""


def container_env_vars(environment: Mapping[str, str], template: Template) -> dict[str, dict[str, str]]:
    """The env-vars file for ``environment`` (``make dev``'s): its services as a container reaches them.

    Every ``*_SECRET_ARN`` and ``REDIS_HOST`` the template declares is blanked (an empty variable is an
    unset one), so the plain local values are used instead of the deployment's secrets and endpoints.
    """
    sections = [template.document.get("Globals", {}).get("Function", {})]
    sections += [resource.get("Properties", {}) for resource in template.document.get("Resources", {}).values()]
    declared = {name for section in sections for name in section.get("Environment", {}).get("Variables", {})}
    parameters = {
        name: environment[name].replace("127.0.0.1", CONTAINER_HOST).replace("localhost", CONTAINER_HOST)
        for name in SAM_VARIABLES
        if name in environment
    }
    blanked = {name: "" for name in sorted(declared) if name.endswith("_SECRET_ARN") or name == "REDIS_HOST"}
    return {"Parameters": {**blanked, **parameters}}


def write_env_vars(path: Path, environment: Mapping[str, str], template: Template) -> Path:
    """Write ``container_env_vars`` to ``path`` (owner-only: it holds this run's admin token)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(container_env_vars(environment, template), indent=2) + "\n")
    path.chmod(0o600)
    return path


def env_vars_for(function_id: str, env_vars: Mapping[str, Any]) -> dict[str, str]:
    """The variables an env-vars file gives ``function_id``: ``Parameters``, then its own section."""
    chosen: dict[str, str] = {}
    for section in (env_vars.get("Parameters"), env_vars.get(function_id)):
        if isinstance(section, dict):
            chosen.update({str(name): _string(value) for name, value in section.items()})
    return {name: value.replace(CONTAINER_HOST, "127.0.0.1") for name, value in chosen.items()}


def _string(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def function_environment(
    template: Template, function_id: str, *, shell: Mapping[str, str], env_vars: Mapping[str, Any]
) -> dict[str, str]:
    """The environment of one invocation of ``function_id`` (see the module docstring)."""
    overrides = {**shell, **env_vars_for(function_id, env_vars)}
    environment = local_environment(template, overrides, function_ids=(function_id,))
    for name, value in LOCAL_AWS.items():
        environment.setdefault(name, value)  # boto3 must sign something; the local bus ignores it
    return {name: value for name, value in environment.items() if value != ""}


def _read_event(source: str | None) -> object:
    if source is None:
        return {}
    text = sys.stdin.read() if source == "-" else Path(source).read_text()
    return json.loads(text)


def invoke(
    function_id: str,
    event: object,
    *,
    template: Template,
    env_vars: Mapping[str, Any] | None = None,
    shell: Mapping[str, str] | None = None,
) -> tuple[object, bool]:
    """Invoke ``function_id`` once with ``event``; returns (what ``sam local invoke`` prints, whether the
    handler succeeded). ``os.environ`` becomes the function's environment, as in a container."""
    spec = template.function(function_id)
    environment = function_environment(
        template, function_id, shell=dict(os.environ) if shell is None else shell, env_vars=env_vars or {}
    )
    for name in [name for name in os.environ if name not in environment]:
        del os.environ[name]  # a blanked variable or a secret's ARN: unset, as in the container
    os.environ.update(environment)
    container = Invoker(template).container(function_id)
    request_id = "local-" + str(int(time.time() * 1000))
    print(f"START RequestId: {request_id} Version: $LATEST", file=sys.stderr, flush=True)
    started = time.monotonic()
    try:
        result: object = container.invoke(event)
        succeeded = True
    except Exception as error:  # the handler's failure is the invocation's answer, as on Lambda
        result = {
            "errorMessage": str(error),
            "errorType": type(error).__name__,
            "requestId": request_id,
            "stackTrace": traceback.format_tb(error.__traceback__),
        }
        succeeded = False
    elapsed_ms = (time.monotonic() - started) * 1000
    print(f"END RequestId: {request_id}", file=sys.stderr)
    print(
        f"REPORT RequestId: {request_id}\tDuration: {elapsed_ms:.2f} ms\tBilled Duration: {int(elapsed_ms) + 1} ms"
        f"\tMemory Size: {spec.memory_size} MB",
        file=sys.stderr,
        flush=True,
    )
    return result, succeeded


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.invoke", description=__doc__.split("\n\n")[0])
    parser.add_argument("function_id", metavar="FunctionLogicalId", help="the function's logical id in the template")
    events = parser.add_mutually_exclusive_group()
    events.add_argument("-e", "--event", help="JSON file with the event ('-' for stdin)")
    events.add_argument("--no-event", action="store_true", help="invoke with {} (the default)")
    parser.add_argument("-n", "--env-vars", type=Path, help="SAM env-vars JSON file (make dev writes one)")
    parser.add_argument("-t", "--template", type=Path, default=DEFAULT_TEMPLATE, help="the SAM template")
    args = parser.parse_args(argv)
    template = Template.load(args.template)
    env_vars = json.loads(args.env_vars.read_text()) if args.env_vars else {}
    event = _read_event(args.event)
    response = sys.stdout
    with contextlib.redirect_stdout(sys.stderr):  # the function's own output is its log, as under sam
        result, succeeded = invoke(args.function_id, event, template=template, env_vars=env_vars)
        _close_containers()
    response.write(json.dumps(result) + "\n")
    response.flush()
    return 0 if succeeded else 1


def _close_containers() -> None:
    """Close what the invocation opened (connections, clients), as the end of a container would."""
    container = sys.modules.get("such_market.container")
    close_all = getattr(container, "close_all", None)
    if callable(close_all):
        close_all()


if __name__ == "__main__":
    sys.exit(main())
