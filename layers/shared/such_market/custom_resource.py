"""CloudFormation custom resources: the request a stack sends to a function, and the answer it waits for.

CloudFormation invokes the function with a request (``RequestType`` Create, Update or Delete, a
presigned S3 ``ResponseURL``, the stack's and the request's ids, the resource's properties) and then
waits — up to an hour — for a JSON document PUT to that URL: ``Status`` (SUCCESS or FAILED),
``Reason``, ``PhysicalResourceId``, ``StackId``, ``RequestId``, ``LogicalResourceId`` and ``Data``.
A function that dies without answering leaves the stack hanging for that hour, so ``serve``:

- runs the work under the invocation's deadline less ``RESPONSE_RESERVE_SECONDS`` (the work's database
  connections are cut at that deadline by the watchdog), so time is always left to answer;
- turns any exception of the work into FAILED with its message (CloudFormation then rolls back);
- PUTs the answer with urllib (no dependency, no copy of AWS's ``cfnresponse``), each attempt bounded by
  ``RESPONSE_TIMEOUT_SECONDS`` and by the time left, retried ``RESPONSE_ATTEMPTS`` times in all on a
  refused connection, a timeout or a non-2xx answer, then logged and given up (the function returns).

The body has no ``Content-Type`` (an empty one): the presigned URL was signed without it, and S3 refuses a
PUT whose signed headers differ. CloudFormation accepts at most 4 KB, so the reason is cut to
``MAX_REASON_CHARS``.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from such_market import deadline
from such_market.backoff import exponential_ceiling
from such_market.observability import logger

RequestType = Literal["Create", "Update", "Delete"]
Status = Literal["SUCCESS", "FAILED"]

RESPONSE_ATTEMPTS: Final = 5
RESPONSE_TIMEOUT_SECONDS: Final = 10.0
RESPONSE_BACKOFF_BASE_SECONDS: Final = 0.5
RESPONSE_BACKOFF_CAP_SECONDS: Final = 4.0
RESPONSE_RESERVE_SECONDS: Final = 60.0
"""Kept back from the work for the answer: the attempts with their backoff, when the function's time allows
(a short remaining time keeps a quarter of it instead)."""
MAX_REASON_CHARS: Final = 1500


class InvalidRequestError(ValueError):
    """The event is not a CloudFormation custom resource request."""


@dataclass(frozen=True, slots=True)
class Request:
    """One custom resource request, as CloudFormation sends it."""

    request_type: RequestType
    response_url: str
    stack_id: str
    request_id: str
    logical_resource_id: str
    physical_resource_id: str | None
    properties: Mapping[str, Any]

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> Request:
        missing = [
            name
            for name in ("RequestType", "ResponseURL", "StackId", "RequestId", "LogicalResourceId")
            if not isinstance(event.get(name), str) or not event[name]
        ]
        if missing:
            raise InvalidRequestError(f"not a custom resource request: {', '.join(missing)} missing")
        request_type = event["RequestType"]
        if request_type not in ("Create", "Update", "Delete"):
            raise InvalidRequestError(f"unknown RequestType {request_type!r}")
        physical = event.get("PhysicalResourceId")
        properties = event.get("ResourceProperties")
        return cls(
            request_type=request_type,
            response_url=event["ResponseURL"],
            stack_id=event["StackId"],
            request_id=event["RequestId"],
            logical_resource_id=event["LogicalResourceId"],
            physical_resource_id=physical if isinstance(physical, str) and physical else None,
            properties=properties if isinstance(properties, dict) else {},
        )


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the work concluded: the status, why, the resource's physical id and its attributes (``Data``)."""

    status: Status
    reason: str
    physical_resource_id: str
    data: Mapping[str, str] = field(default_factory=dict)


def response_body(request: Request, outcome: Outcome) -> dict[str, object]:
    """The document CloudFormation expects at the response URL."""
    reason = outcome.reason if len(outcome.reason) <= MAX_REASON_CHARS else outcome.reason[: MAX_REASON_CHARS - 1] + "…"
    return {
        "Status": outcome.status,
        "Reason": reason,
        "PhysicalResourceId": outcome.physical_resource_id,
        "StackId": request.stack_id,
        "RequestId": request.request_id,
        "LogicalResourceId": request.logical_resource_id,
        "NoEcho": False,
        "Data": dict(outcome.data),
    }


def put_response(url: str, body: Mapping[str, object], *, respond_by: float | None) -> bool:
    """PUT ``body`` to ``url``: up to ``RESPONSE_ATTEMPTS`` attempts, none started or waited for past
    ``respond_by`` (a ``time.monotonic()`` instant, or ``None``); whether CloudFormation's URL took it."""
    payload = json.dumps(body).encode()
    for attempt in range(1, RESPONSE_ATTEMPTS + 1):
        timeout = RESPONSE_TIMEOUT_SECONDS
        if respond_by is not None:
            timeout = min(timeout, respond_by - time.monotonic())
            if timeout <= 0:
                break
        problem = _put_once(url, payload, timeout)
        if problem is None:
            return True
        logger.warning("custom resource response not taken", extra={"attempt": attempt, "problem": problem})
        if attempt == RESPONSE_ATTEMPTS:
            break
        pause = exponential_ceiling(attempt, base=RESPONSE_BACKOFF_BASE_SECONDS, cap=RESPONSE_BACKOFF_CAP_SECONDS)
        if respond_by is not None and time.monotonic() + pause >= respond_by:
            break
        time.sleep(pause)
    # The status still reaches the log: an operator can answer the stack by hand (curl -X PUT) from it.
    logger.error(
        "custom resource response could not be delivered; CloudFormation waits for it until its timeout",
        extra={"status": body.get("Status"), "reason": body.get("Reason"), "requestId": body.get("RequestId")},
    )
    return False


def _put_once(url: str, payload: bytes, timeout: float) -> str | None:
    """One PUT; ``None`` when it was taken, else what went wrong (never the URL: it carries a signature)."""
    request = urllib.request.Request(  # noqa: S310 - the URL is CloudFormation's presigned https URL
        url, data=payload, method="PUT", headers={"Content-Type": ""}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310 - see above
            status = int(answer.status)
    except urllib.error.HTTPError as error:
        return f"HTTP {error.code}"
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        return f"{type(error).__name__}: {reason}"
    return None if 200 <= status < 300 else f"HTTP {status}"


def serve(
    event: Mapping[str, Any], context: object, work: Callable[[Request], Outcome], *, default_physical_id: str
) -> dict[str, object]:
    """Run ``work`` for the request in ``event`` and PUT its outcome to the response URL (see the module doc).

    Returns what was PUT, and whether it was delivered (``Delivered``), for the logs and the tests."""
    request = Request.from_event(event)  # without a response URL nobody can be answered: raise
    started = time.monotonic()
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    total = None if remaining is None else float(remaining()) / 1000 - deadline.SAFETY_MARGIN_SECONDS
    respond_by = None if total is None else started + total
    work_cap = None if total is None else max(0.0, total - min(RESPONSE_RESERVE_SECONDS, total / 4))
    physical_id = request.physical_resource_id or default_physical_id
    try:
        with deadline.invocation(context, cap_seconds=work_cap):
            outcome = work(request)
    except Exception as error:  # any failure must still answer, or the stack waits an hour
        logger.exception("custom resource request failed", extra={"requestType": request.request_type})
        outcome = Outcome("FAILED", f"{type(error).__name__}: {error}", physical_id)
    body = response_body(request, outcome)
    delivered = put_response(request.response_url, body, respond_by=respond_by)
    logger.info(
        "custom resource answered",
        extra={"requestType": request.request_type, "status": outcome.status, "delivered": delivered},
    )
    return {**body, "Delivered": delivered}
