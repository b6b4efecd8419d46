"""The performance-test use cases: start a run, run it (in its own function), read it, reset.

``start_run`` (POST ``{action: "run", profile?}``) takes the one-run-at-a-time lock (409
``performance_test_running`` while a run holds it), stores the run as ``queued`` and publishes
``cache.performance_test_requested``; the answer is 202 with the ``runId``. ``execute_run`` (the
``RunPerformanceTestFunction``, on that event) claims the run (a redelivered event does nothing), runs
the profile within a budget under its invocation's deadline (``perftest.runner``), stores the figures
and the recommendations derived from them, and releases the lock. ``reset`` (``{action: "reset"}``)
forgets every stored run (409 while one is going). ``get_run`` answers one run, or the latest.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal, cast, get_args

from such_market.cache.client import build_client
from such_market.config import AdminSettings, CacheSettings, EventSettings, FunctionSettings
from such_market.errors import (
    BadRequestError,
    ConflictError,
    InvalidEventError,
    NotFoundError,
    ServiceUnavailableError,
)
from such_market.events.wire import read_common
from such_market.formats import iso_utc_or_none
from such_market.observability import logger
from such_market.perftest import store
from such_market.perftest.runner import PROFILES, PerformanceRun, recommendations
from such_market.runtime import Runtime
from such_market.validation import parse_json_object

ProfileName = Literal["quick", "standard", "stress"]
PROFILE_NAMES: Final = get_args(ProfileName)
RUN_REQUESTED: Final = "cache.performance_test_requested"
RUN_ID_PATTERN: Final = "[0-9a-f]{32}"
_RUN_ID = re.compile(RUN_ID_PATTERN)
MAX_BODY_BYTES: Final = 1024
LOCK_MARGIN_SECONDS: Final = 120
"""The lock outlives a run's budget by this much: time for the event to arrive and the results to be written."""
RUNNER_RESERVE_SECONDS: Final = 5.0
"""Kept back from the runner's deadline to store the results and release the lock."""


class PerformanceAdminSettings(FunctionSettings):
    """The admin function: the cache (records, lock), the bus (the run's event), the admin token."""

    cache: CacheSettings
    events: EventSettings
    admin: AdminSettings


class PerformanceRunnerSettings(FunctionSettings):
    """The runner: the cache it measures and keeps its records in."""

    cache: CacheSettings


def _now_iso() -> str | None:
    return iso_utc_or_none(datetime.now(UTC))


def parse_action(body: str | bytes | None) -> tuple[Literal["run", "reset"], ProfileName]:
    """``{action: "run", profile?}`` or ``{action: "reset"}``; 400 for anything else."""
    payload = parse_json_object(
        body, max_bytes=MAX_BODY_BYTES, shape="{action, profile?}", fields=("action", "profile")
    )
    action = payload.get("action")
    profile = payload.get("profile", "quick")
    if action == "reset":
        if "profile" in payload:
            raise BadRequestError("reset does not take profile", code="invalid_body")
        return "reset", "quick"
    if action != "run":
        raise BadRequestError('invalid action: expected "run" or "reset"', code="invalid_action")
    if not isinstance(profile, str) or profile not in PROFILES:
        raise BadRequestError(f"invalid profile: expected one of {', '.join(PROFILES)}", code="invalid_profile")
    return "run", cast("ProfileName", profile)


@dataclass(frozen=True, slots=True)
class RunRequest:
    """A ``cache.performance_test_requested`` detail as the runner reads it (``read_run_request``)."""

    event_id: str
    run_id: str
    profile: ProfileName


def read_run_request(detail: Mapping[str, Any]) -> RunRequest:
    """The runner's event read in wire form, as ``models.CachePerformanceTestRequested`` reads it or more
    strictly (``InvalidEventError``): the runner's cold start then imports neither pydantic nor the models."""
    event_id = read_common(RUN_REQUESTED, detail)
    run_id, profile = detail.get("runId"), detail.get("profile")
    if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id):
        raise InvalidEventError(f"{RUN_REQUESTED} runId: must be 32 lower-case hex digits")
    if profile not in PROFILE_NAMES:
        raise InvalidEventError(f"{RUN_REQUESTED} profile: must be one of {', '.join(PROFILE_NAMES)}")
    return RunRequest(event_id, run_id, cast("ProfileName", profile))


def parse_run_id(value: str | None) -> str | None:
    if value is None:
        return None
    if not _RUN_ID.fullmatch(value):
        raise BadRequestError("invalid runId: expected the 32 hex digits a run answered", code="invalid_run_id")
    return value


def start_run(runtime: Runtime, profile: ProfileName) -> dict[str, Any]:
    """Queue a run of ``profile``: 409 while another run holds the lock; the 202 body otherwise."""
    from such_market.events.models import CachePerformanceTestRequested, Event  # pydantic: starting a run only

    client, keys = runtime.cache_client, runtime.cache.keys
    run_id = secrets.token_hex(16)
    lock_value = f"{run_id}:{secrets.token_hex(16)}"
    ttl_ms = int((PROFILES[profile].budget_seconds + LOCK_MARGIN_SECONDS) * 1000)
    if not store.take_lock(client, keys, lock_value, ttl_ms=ttl_ms):
        raise ConflictError("a performance test is already running", code="performance_test_running")
    record = {
        "runId": run_id,
        "status": "queued",
        "profile": profile,
        "requestedAt": _now_iso(),
        "requestedAtMs": int(time.time() * 1000),
        store.LOCK_VALUE_FIELD: lock_value,
    }
    store.save(client, keys, record, new=True)
    result = runtime.publisher.publish([Event(CachePerformanceTestRequested(run_id=run_id, profile=profile))])
    if not result.ok:
        record.update(status="failed", error="the run could not be queued (event bus)", finishedAt=_now_iso())
        store.save(client, keys, record)
        store.release_lock(client, keys, lock_value)
        logger.warning("performance run not queued: publish failed", extra={"errors": dict(result.failed)})
        raise ServiceUnavailableError("the run could not be queued; try again shortly", retry_after=5)
    return {"runId": run_id, "status": "queued", "profile": profile}


def get_run(runtime: Runtime, run_id: str | None) -> dict[str, Any]:
    """One run's record (``run_id``), or the latest; 404 when there is none."""
    client, keys = runtime.cache_client, runtime.cache.keys
    wanted = run_id or store.latest_id(client, keys)
    record = store.load(client, keys, wanted) if wanted else None
    if record is None:
        what = f"no performance run {run_id}" if run_id else "no performance run yet"
        raise NotFoundError(what, code="performance_run_not_found")
    return store.public(record)


def reset(runtime: Runtime) -> dict[str, Any]:
    """Forget every stored run (409 while one is going)."""
    client, keys = runtime.cache_client, runtime.cache.keys
    if store.lock_held(client, keys):
        raise ConflictError("a performance test is running; reset when it ends", code="performance_test_running")
    return {"success": True, "runsDeleted": store.delete_all(client, keys)}


def execute_run(
    runtime: Runtime,
    run_id: str,
    *,
    time_left: float | None,
    connect: Callable[[], Any] | None = None,
    before_step: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Run ``run_id`` if it is queued and not claimed yet; returns a short summary for the function's log."""
    client, keys = runtime.cache_client, runtime.cache.keys
    record = store.load(client, keys, run_id)
    if record is None or record.get("status") != "queued":
        return {"runId": run_id, "skipped": "not a queued run"}
    profile = PROFILES[str(record["profile"])]
    if not store.claim(client, keys, run_id, ttl_seconds=store.RETENTION_SECONDS):
        return {"runId": run_id, "skipped": "already claimed"}
    budget = (
        profile.budget_seconds if time_left is None else min(profile.budget_seconds, time_left - RUNNER_RESERVE_SECONDS)
    )
    started = time.monotonic()
    record.update(status="running", startedAt=_now_iso(), budgetSeconds=round(max(budget, 0.0), 1))
    store.save(client, keys, record)
    settings = runtime.settings.part(CacheSettings)
    try:
        run = PerformanceRun(
            connect or (lambda: build_client(settings)),
            key_prefix=f"{keys.prefix}:perftest:{run_id}",
            profile=profile,
            stop_at=started + max(budget, 0.0),
            before_step=before_step,
        )
        figures = run.run()
        record.update(figures, status="completed", recommendations=recommendations(figures))
    except Exception as error:
        logger.exception("performance run failed")
        record.update(status="failed", error=f"the run failed ({type(error).__name__})")
    finally:
        record.update(finishedAt=_now_iso(), tookMs=round((time.monotonic() - started) * 1000, 1))
        store.save(client, keys, record)
        store.release_lock(client, keys, str(record[store.LOCK_VALUE_FIELD]))
    stress = record.get("stress") or {}
    return {"runId": run_id, "status": record["status"], "breakingPoint": stress.get("breakingPoint")}
