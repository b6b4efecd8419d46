"""Local schedules: the template's ``ScheduleV2``/``Schedule`` functions, run on their expressions.

``rate(N minute|minutes|hour|hours|day|days)`` runs every N units, the first run one interval after
start (as a new EventBridge schedule does). ``cron(minutes hours day-of-month month day-of-week
year)`` runs at the next UTC minute the fields allow; supported field syntax: ``*``, ``?``, numbers,
ranges ``a-b``, lists ``a,b``, steps ``*/n`` and ``a/n`` or ``a-b/n``, month names ``JAN``-``DEC`` and
day names ``SUN``-``SAT`` (day-of-week 1-7 = SUN-SAT, as in EventBridge). ``L``, ``W`` and ``#`` are
not supported: such a schedule is skipped with a warning and can still be run with ``run_now``.

Each run gets the payload a scheduled target receives (as in ``events/outbox_relay.json``): a
"Scheduled Event" with ``detail`` {} from ``aws.scheduler`` (``ScheduleV2``) or ``aws.events``
(``Schedule``), the schedule's ARN in ``resources`` — or the schedule's ``Input`` when it has one.
A failing run is retried up to the schedule's ``RetryPolicy.MaximumRetryAttempts`` (default 0
locally), then logged. A run does not start while the previous run of the same schedule is going.

CLI, against ``DATABASE_URL``/``REDIS_URL`` (and the rest of the environment) as set::

    python -m local.scheduler list
    python -m local.scheduler run <FunctionLogicalId>
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from local.invoker import LOCAL_ACCOUNT_ID, LOCAL_AWS, LOCAL_DEFAULTS, Invoker, JsonValue, local_environment
from local.template import ScheduleSpec, Template, TemplateError

_RATE = re.compile(r"^rate\(\s*(?P<value>\d+)\s+(?P<unit>minutes?|hours?|days?)\s*\)$", re.IGNORECASE)
_CRON = re.compile(r"^cron\((?P<fields>[^)]*)\)$", re.IGNORECASE)
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}
_MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_MONTHS = {name: index for index, name in enumerate(_MONTH_NAMES, 1)}
_DAYS = {name: index for index, name in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"], 1)}
_SEARCH_DAYS = 366 * 8  # far enough for any supported expression (a 29 February on a given weekday)


class ScheduleError(ValueError):
    """A schedule expression the local scheduler cannot follow."""


# ---------------------------------------------------------------------------------------------------
# Expressions
# ---------------------------------------------------------------------------------------------------


def rate_seconds(expression: str) -> int | None:
    """The interval of a ``rate(...)`` expression in seconds; None for other expressions."""
    match = _RATE.match(expression.strip())
    if match is None:
        if expression.strip().lower().startswith("rate("):
            raise ScheduleError(f"malformed rate expression {expression!r}")
        return None
    value = int(match["value"])
    unit = match["unit"].lower().rstrip("s")
    if value < 1:
        raise ScheduleError(f"{expression!r}: the rate must be at least 1")
    if (value == 1) != (not match["unit"].lower().endswith("s")):
        raise ScheduleError(f"{expression!r}: use '1 {unit}' or 'N {unit}s' (EventBridge is strict about it)")
    return value * _UNIT_SECONDS[unit]


@dataclass(frozen=True, slots=True)
class CronExpression:
    """An EventBridge cron expression (UTC): the allowed values of each field."""

    minutes: frozenset[int]
    hours: frozenset[int]
    days_of_month: frozenset[int] | None
    months: frozenset[int]
    days_of_week: frozenset[int] | None
    years: frozenset[int] | None

    @classmethod
    def parse(cls, expression: str) -> CronExpression:
        match = _CRON.match(expression.strip())
        if match is None:
            raise ScheduleError(f"not a cron expression: {expression!r}")
        fields = match["fields"].split()
        if len(fields) != 6:
            raise ScheduleError(f"{expression!r}: cron takes 6 fields (minutes hours dom month dow year)")
        minute, hour, dom, month, dow, year = fields
        return cls(
            minutes=_cron_field(minute, 0, 59, {}),
            hours=_cron_field(hour, 0, 23, {}),
            days_of_month=None if dom in {"?", "*"} else _cron_field(dom, 1, 31, {}),
            months=_cron_field(month, 1, 12, _MONTHS),
            days_of_week=None if dow in {"?", "*"} else _cron_field(dow, 1, 7, _DAYS),
            years=None if year in {"?", "*"} else _cron_field(year, 1970, 2199, {}),
        )

    def next_after(self, moment: datetime) -> datetime:
        """The first minute strictly after ``moment`` (UTC) that the expression allows."""
        start = moment.astimezone(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
        day = start.replace(hour=0, minute=0)
        for _ in range(_SEARCH_DAYS):
            if self._day_matches(day):
                for hour in sorted(self.hours):
                    for minute in sorted(self.minutes):
                        candidate = day.replace(hour=hour, minute=minute)
                        if candidate >= start:
                            return candidate
            day += timedelta(days=1)
        raise ScheduleError("the cron expression never fires")

    def _day_matches(self, day: datetime) -> bool:
        if self.years is not None and day.year not in self.years:
            return False
        if day.month not in self.months:
            return False
        if self.days_of_month is not None and day.day not in self.days_of_month:
            return False
        # Python: Monday = 0 … Sunday = 6; EventBridge: SUN = 1 … SAT = 7.
        return self.days_of_week is None or (day.weekday() + 1) % 7 + 1 in self.days_of_week


def _cron_value(text: str, names: dict[str, int]) -> int:
    upper = text.upper()
    if upper in names:
        return names[upper]
    if not text.isdigit():
        raise ScheduleError(f"unsupported cron value {text!r} (L, W and # are not supported locally)")
    return int(text)


def _cron_field(text: str, low: int, high: int, names: dict[str, int]) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        base, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if step < 1:
            raise ScheduleError(f"bad cron step in {text!r}")
        if base == "*":
            first, last = low, high
        elif "-" in base:
            first_text, last_text = base.split("-", 1)
            first, last = _cron_value(first_text, names), _cron_value(last_text, names)
        else:
            first = _cron_value(base, names)
            last = high if step_text else first
        if not low <= first <= high or not low <= last <= high or first > last:
            raise ScheduleError(f"cron field {text!r} is outside {low}-{high}")
        values.update(range(first, last + 1, step))
    return frozenset(values)


def next_run(expression: str, after: datetime) -> datetime:
    """When a schedule with ``expression`` runs next after ``after`` (UTC)."""
    seconds = rate_seconds(expression)
    if seconds is not None:
        return after + timedelta(seconds=seconds)
    return CronExpression.parse(expression).next_after(after)


# ---------------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------------


def scheduled_event(
    schedule: ScheduleSpec, *, account_id: str, region: str, at: datetime | None = None
) -> dict[str, Any]:
    """The payload a scheduled invocation of ``schedule`` gets."""
    if schedule.input is not None:
        try:
            parsed: dict[str, Any] = json.loads(schedule.input)
        except ValueError:
            return {"input": schedule.input}
        return parsed
    moment = (at or datetime.now(UTC)).astimezone(UTC)
    if schedule.kind == "ScheduleV2":
        source = "aws.scheduler"
        resource = f"arn:aws:scheduler:{region}:{account_id}:schedule/default/{schedule.name}"
    else:
        source = "aws.events"
        resource = f"arn:aws:events:{region}:{account_id}:rule/{schedule.name}"
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": source,
        "account": account_id,
        "time": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [resource],
        "detail": {},
    }


@dataclass
class _Slot:
    schedule: ScheduleSpec
    due: datetime
    running: bool = False


class LocalScheduler:
    """Runs the template's enabled schedules in a background thread."""

    def __init__(
        self,
        template: Template,
        invoker: Invoker,
        *,
        account_id: str = LOCAL_ACCOUNT_ID,
        region: str | None = None,
        retry_delay: float = 0.5,
        quiet: bool = False,
    ) -> None:
        self.template = template
        self.invoker = invoker
        self.account_id = account_id
        self.region = region or invoker.region
        self.retry_delay = retry_delay
        self.quiet = quiet
        self.skipped: dict[str, str] = {}
        """Schedules that do not run automatically, by name, with the reason."""
        self._slots: list[_Slot] = []
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def schedules(self) -> tuple[ScheduleSpec, ...]:
        return self.template.schedules

    def start(self) -> LocalScheduler:
        now = datetime.now(UTC)
        for schedule in self.template.schedules:
            if not schedule.enabled:
                self.skipped[schedule.name] = "disabled in the template"
                continue
            try:
                due = next_run(schedule.expression, now)
            except ScheduleError as error:
                self.skipped[schedule.name] = str(error)
                self._log(f"{schedule.name}: not scheduled locally: {error}")
                continue
            self._slots.append(_Slot(schedule, due))
        self._thread = threading.Thread(target=self._loop, name="local-scheduler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> LocalScheduler:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no scheduled run is going (a run that waits for the cache may take its whole
        budget); False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: not any(slot.running for slot in self._slots), timeout)

    def run_now(self, function_id: str) -> JsonValue:
        """Run ``function_id``'s (first) schedule once, now, in this thread; returns its result.

        Exceptions of the function propagate (after the schedule's retries).
        """
        schedule = self._schedule_of(function_id)
        return self._run(schedule)

    def _schedule_of(self, function_id: str) -> ScheduleSpec:
        for schedule in self.template.schedules:
            if function_id in {schedule.function_id, schedule.name}:
                return schedule
        known = ", ".join(sorted({s.function_id for s in self.template.schedules})) or "none"
        raise TemplateError(f"{function_id} has no schedule in the template (scheduled functions: {known})")

    def _run(self, schedule: ScheduleSpec) -> JsonValue:
        retries = schedule.retry_attempts or 0
        for attempt in range(1, retries + 2):
            event = scheduled_event(schedule, account_id=self.account_id, region=self.region)
            started = time.monotonic()
            try:
                result = self.invoker.invoke(schedule.function_id, event)
            except Exception:
                if attempt > retries:
                    raise
                self._log(f"{schedule.name} attempt {attempt} failed; retrying")
                time.sleep(self.retry_delay * attempt)
                continue
            self._log(f"{schedule.name} → {schedule.function_id} ok {(time.monotonic() - started) * 1000:.0f}ms")
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    def _loop(self) -> None:
        while not self._stop.is_set():
            now = datetime.now(UTC)
            wait = 60.0
            with self._lock:
                for slot in self._slots:
                    if slot.due <= now:
                        slot.due = next_run(slot.schedule.expression, now)
                        if slot.running:
                            self._log(f"{slot.schedule.name}: previous run still going; this run is skipped")
                        else:
                            slot.running = True
                            threading.Thread(
                                target=self._run_slot, args=(slot,), name=f"schedule-{slot.schedule.name}"
                            ).start()
                    wait = min(wait, (slot.due - now).total_seconds())
            self._stop.wait(max(wait, 0.05))

    def _run_slot(self, slot: _Slot) -> None:
        try:
            self._run(slot.schedule)
        except Exception as error:  # a failed scheduled run is logged; the schedule goes on
            detail = "".join(traceback.format_exception(error)).rstrip()
            self._log(f"{slot.schedule.name} → {slot.schedule.function_id} failed:\n{detail}")
        finally:
            with self._idle:
                slot.running = False
                self._idle.notify_all()

    def _log(self, message: str) -> None:
        if not self.quiet:
            print(f"[scheduler] {message}", file=sys.stderr, flush=True)


def describe(schedule: ScheduleSpec) -> str:
    """One line about a schedule, for listings."""
    state = "" if schedule.enabled else " (disabled)"
    return f"{schedule.function_id:<28} {schedule.expression}{state}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.scheduler", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="list the template's schedules")
    run = commands.add_parser("run", help="run one function's schedule once, now")
    run.add_argument("function", help="logical id of a scheduled function, e.g. OutboxRelayFunction")
    arguments = parser.parse_args(argv)
    template = Template.load()
    if arguments.command == "list":
        for schedule in template.schedules:
            print(describe(schedule))
        return 0
    missing = [name for name in ("DATABASE_URL", "REDIS_URL") if not os.environ.get(name)]
    if missing:
        print(f"set {' and '.join(missing)} (the database and cache to run against)", file=sys.stderr)
        return 2
    return _run_once(template, arguments.function)


def _run_once(template: Template, function_id: str) -> int:
    """Run one schedule against the environment's database and cache; events go to a local bus."""
    from local.bus import LocalEventBus  # the bus is only needed here

    invoker = Invoker(template)
    bus: LocalEventBus | None = None
    overrides = dict(os.environ)
    if not overrides.get("EVENTBRIDGE_ENDPOINT_URL"):
        # Never publish to a real AWS account from here: a local bus receives (and delivers) the events.
        bus = LocalEventBus(template, invoker, bus_name=overrides.get("EVENT_BUS_NAME", "such-market")).start()
        overrides.update(EVENTBRIDGE_ENDPOINT_URL=bus.url, **LOCAL_AWS)
    environment = local_environment(template, overrides, defaults={**LOCAL_DEFAULTS, **LOCAL_AWS})
    for name in [name for name in os.environ if name not in environment]:
        del os.environ[name]
    os.environ.update(environment)
    try:
        # The function's own output (logs, EMF metrics) is its log stream, as `sam local invoke` shows it:
        # stderr; stdout carries only the result.
        with contextlib.redirect_stdout(sys.stderr):
            result = LocalScheduler(template, invoker).run_now(function_id)
    except TemplateError as error:
        print(error, file=sys.stderr)
        return 2
    except Exception:
        traceback.print_exc()
        return 1
    finally:
        if bus is not None:
            bus.drain(timeout=30)
            bus.stop()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
