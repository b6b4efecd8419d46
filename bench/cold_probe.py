"""The program a cold-start measurement runs in a fresh interpreter (``python -c <this file's text>``).

Arguments: the handler module and the path of the event to answer. It times, with ``perf_counter_ns``
from its first statement: the import of the handler module, init (``load_settings`` of the function's
settings model, which resolves the secrets its parts hold), the first answer (``lambda_handler`` once)
and a second, warm answer (a cache hit for a read). It prints one JSON line (the phases in ns, the
answer's status and ``X-Cache``, which heavy libraries ended up imported, every top-level package
loaded) and leaves with ``os._exit``: a Lambda container is frozen after its answer, never torn down, so
interpreter teardown (joining the analytics flusher, closing pools) is no part of a cold start. The floor
program leaves the same way.

It imports nothing of the bench (it runs against another tree's layer in the A/B) and is not
imported by it: ``cold_start`` reads its text.
"""

import json
import os
import sys
import time

started = time.perf_counter_ns()
HEAVY = ("boto3", "botocore", "pydantic", "pydantic_settings", "aws_lambda_powertools", "asyncio", "httpx", "psycopg")


class Context:
    """The attributes of a LambdaContext our handlers read."""

    function_name = "bench-function"
    function_version = "$LATEST"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench-function"
    aws_request_id = "00000000-0000-4000-8000-000000000000"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 10_000


def settings_model(module: object) -> object:
    """The function's settings model: what ``api_handler`` or the ``EventConsumer`` was given, else the
    ``FunctionSettings`` subclass the module defines or imports (None when there is none)."""
    for holder in ("app", "consumer"):
        model = getattr(getattr(module, holder, None), "settings_model", None)
        if isinstance(model, type):
            return model
    try:
        from such_market.config import FunctionSettings
    except ImportError:
        return None
    found = [
        value
        for value in vars(module).values()
        if isinstance(value, type) and issubclass(value, FunctionSettings) and value is not FunctionSettings
    ]
    own = [value for value in found if value.__module__ == getattr(module, "__name__", "")]
    return (own or found or [None])[0]


def answer(module: object, event: object) -> tuple[object, object, str]:
    """One invocation: (status, X-Cache, error) — a raised exception is an answer too (Lambda reports it)."""
    try:
        result = module.lambda_handler(event, Context())  # type: ignore[attr-defined]
    except Exception as error:  # reported, not hidden
        return None, None, f"{type(error).__name__}: {str(error)[:160]}"
    if isinstance(result, dict) and "statusCode" in result:
        return result["statusCode"], (result.get("headers") or {}).get("X-Cache"), ""
    return None, None, ""


def main() -> None:
    function, event_path = sys.argv[1], sys.argv[2]
    with open(event_path, "rb") as file:
        event = json.loads(file.read())
    t0 = time.perf_counter_ns()
    module = __import__(function)
    t1 = time.perf_counter_ns()
    model = settings_model(module)
    init_error = ""
    if model is not None:
        from such_market.config import load_settings

        try:
            load_settings(model)  # type: ignore[type-var]
        except Exception as error:
            init_error = f"{type(error).__name__}: {str(error)[:160]}"
    t2 = time.perf_counter_ns()
    heavy_after_init = [name for name in HEAVY if name in sys.modules]
    status, cache, error = answer(module, event)
    t3 = time.perf_counter_ns()
    answer(module, event)
    t4 = time.perf_counter_ns()
    report = {
        "before_ns": t0 - started,
        "import_ns": t1 - t0,
        "init_ns": t2 - t1,
        "first_ns": t3 - t2,
        "warm_ns": t4 - t3,
        "status": status,
        "cache": cache,
        "error": init_error or error,
        "settings": getattr(model, "__name__", None),
        "heavy_after_init": heavy_after_init,
        "heavy_after_answer": [name for name in HEAVY if name in sys.modules],
        "loaded_after_answer": sorted({name.partition(".")[0] for name in list(sys.modules)}),
    }
    sys.stdout.write(json.dumps(report) + "\n")
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
