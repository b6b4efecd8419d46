"""The structured JSON logger shared by every function: the standard library's ``logging`` with a JSON formatter.

It writes what Powertools' ``Logger`` wrote, one JSON object per line on stdout: ``level``, ``location``
(``function:line``), ``message``, ``timestamp`` (``2026-01-02 03:04:05,678+0000``), ``service``, then the
``extra`` keys of the call, ``exception``/``exception_name`` when an exception is logged and ``xray_trace_id``
on Lambda. The level comes from ``POWERTOOLS_LOG_LEVEL`` (the template's Globals; default ``INFO``).

It is our own rather than Powertools' because it is on every function's cold path: importing Powertools'
``Logger`` alone cost more than the cache client a cached read needs (it imports botocore's pieces too).
Log calls pass error types and identifiers, never secrets, keys or request bodies.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Final

import orjson

SERVICE: Final = "such-market"
_RECORD_FIELDS: Final = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
"""The attributes every log record has: anything else on a record came from the call's ``extra``."""


class JsonFormatter(logging.Formatter):
    """One JSON object per record, with Powertools' keys in Powertools' order."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "level": record.levelname,
            "location": f"{record.funcName}:{record.lineno}",
            "message": record.getMessage(),
            "timestamp": self.formatTime(record),
            "service": SERVICE,
        }
        entry.update((key, value) for key, value in vars(record).items() if key not in _RECORD_FIELDS)
        if record.exc_info and record.exc_info[0] is not None:
            entry["exception"] = self.formatException(record.exc_info)
            entry["exception_name"] = record.exc_info[0].__name__
        trace = os.environ.get("_X_AMZN_TRACE_ID")
        if trace:
            entry["xray_trace_id"] = trace.split(";")[0].removeprefix("Root=")
        return orjson.dumps(entry, default=str).decode()

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 - logging's name
        del datefmt  # one format, Powertools' default
        return time.strftime(f"%Y-%m-%d %H:%M:%S,{int(record.msecs):03d}%z", time.localtime(record.created))


class _NotOurs(logging.Filter):
    """Keeps our records out of the root logger's handlers (Lambda's own), which would print them twice."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.name.startswith(SERVICE)


def _configured() -> logging.Logger:
    configured = logging.getLogger(SERVICE)
    configured.setLevel(os.environ.get("POWERTOOLS_LOG_LEVEL") or "INFO")
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    configured.addHandler(handler)
    # Records still propagate (pytest's caplog reads them at the root); other root handlers skip them.
    for root_handler in logging.root.handlers:
        if type(root_handler).__name__ != "LogCaptureHandler":
            root_handler.addFilter(_NotOurs())
    return configured


logger: Final = _configured()
