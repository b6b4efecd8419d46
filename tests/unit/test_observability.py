"""The JSON logger writes the fields Powertools' Logger wrote, one object per line, without Powertools."""

from __future__ import annotations

import logging
import re

import orjson
import pytest

from such_market.observability import SERVICE, JsonFormatter, logger


def _lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    """Our records as our handler writes them (its stream is the stdout of the process, kept from import)."""
    (handler,) = logging.getLogger(SERVICE).handlers
    assert isinstance(handler, logging.StreamHandler)
    return [orjson.loads(handler.format(record)) for record in caplog.records if record.name == SERVICE]


def test_a_line_has_powertools_fields_in_order_and_the_extra_keys(caplog: pytest.LogCaptureFixture) -> None:
    logger.warning("cache unavailable", extra={"error_type": "TimeoutError", "attempt": 2})
    (entry,) = _lines(caplog)
    assert list(entry) == ["level", "location", "message", "timestamp", "service", "error_type", "attempt"]
    assert entry["level"] == "WARNING"
    assert entry["service"] == SERVICE
    assert entry["message"] == "cache unavailable"
    assert re.fullmatch(r"test_a_line_has_powertools_fields_in_order_and_the_extra_keys:\d+", str(entry["location"]))
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}[+-]\d{4}", str(entry["timestamp"]))
    assert (entry["error_type"], entry["attempt"]) == ("TimeoutError", 2)


def test_an_exception_is_named_and_the_trace_id_kept(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("_X_AMZN_TRACE_ID", "Root=1-abc-def;Parent=1;Sampled=0")
    try:
        raise ValueError("bad")
    except ValueError:
        logger.exception("failed")
    (entry,) = _lines(caplog)
    assert entry["level"] == "ERROR"
    assert entry["exception_name"] == "ValueError"
    assert "ValueError: bad" in str(entry["exception"])
    assert entry["xray_trace_id"] == "1-abc-def"


def test_records_reach_caplog_and_values_that_json_cannot_hold_are_strings(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        logger.info("queued", extra={"path": object})
    (record,) = [r for r in caplog.records if r.name == SERVICE]
    assert orjson.loads(JsonFormatter().format(record))["path"] == str(object)
