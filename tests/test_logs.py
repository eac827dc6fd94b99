"""Structured logs: one JSON object a line in production, never a phone number (SPEC §6, §9)."""

from __future__ import annotations

import io
import json
import logging
from datetime import UTC, datetime

import pytest

from gateway import logs
from gateway.logs import JsonFormatter, RedactNumbers

from .leaks import find_number

NUMBER = "+8801711283946"
FORMATS = [
    "+8801711283946",
    "8801711283946",
    "+880 1711-283946",
    "01711-283946",
    "01711 283 946",
    "(+880) 1711 283 946",
    "+880.1711.283.946",
    "whatsapp:+8801711283946",
    "০১৭১১২৮৩৯৪৬",
    "tel:+880-1711-283946",
]


def _record(msg: str, *args, exc_info=None, **extra) -> logging.LogRecord:
    record = logging.LogRecord("gateway.test", logging.WARNING, __file__, 10, msg, args, exc_info)
    record.__dict__.update(extra)
    return record


def _format(record: logging.LogRecord, formatter: logging.Formatter | None = None) -> str:
    """The line a handler with our filter and formatter writes for the record."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactNumbers())
    handler.setFormatter(formatter or JsonFormatter())
    handler.handle(record)
    return stream.getvalue()


def _digits(text: str) -> str:
    return "".join(c for c in text if c.isdigit())


@pytest.mark.parametrize("number", FORMATS)
def test_a_number_in_the_message_is_redacted(number):
    line = _format(_record("reply to %s failed", number))
    prefix = number.split(":")[0] + ":" if ":" in number else ""
    assert json.loads(line)["message"] == f"reply to {prefix}[number] failed"
    assert not find_number(NUMBER, line)


@pytest.mark.parametrize("number", FORMATS)
def test_a_number_in_the_format_string_itself_is_redacted(number):
    line = _format(_record(f"sender {number} unknown"))
    assert not find_number(NUMBER, line)
    assert "[number]" in line


def test_several_numbers_in_one_line():
    line = _format(_record("%s then %s then %s", "+254711283946", "0711 283 946", NUMBER))
    message = json.loads(line)["message"]
    assert message == "[number] then [number] then [number]"


def test_numbers_in_extra_fields_are_redacted_even_nested():
    extra = {
        "to": NUMBER,
        "event": {"value": f"call {NUMBER}", "ids": [1, NUMBER]},
        "pair": (NUMBER, 1),
        "raw": NUMBER.encode(),
    }
    line = _format(_record("sending", **extra))
    data = json.loads(line)
    assert not find_number(NUMBER, line)
    assert data["to"] == "[number]"
    assert data["event"] == {"value": "call [number]", "ids": [1, "[number]"]}


def test_the_callers_own_objects_are_not_changed():
    counts = {"answers": 1, "note": NUMBER}
    _format(_record("persisted", counts=counts))
    assert counts == {"answers": 1, "note": NUMBER}


def test_a_number_in_a_traceback_is_redacted():
    try:
        raise ValueError(f"Invalid phone number: {NUMBER}")
    except ValueError as exc:
        record = _record("send failed", exc_info=(type(exc), exc, exc.__traceback__))
    line = _format(record)
    data = json.loads(line)
    assert "ValueError: Invalid phone number: [number]" in data["error"]
    assert not find_number(NUMBER, line)


def test_traceback_without_the_filter_is_still_formatted_and_redacted():
    """JsonFormatter alone (another handler, no filter) neither drops nor leaks the error."""
    try:
        raise ValueError(f"Invalid phone number: {NUMBER}")
    except ValueError as exc:
        record = _record("send failed", exc_info=(type(exc), exc, exc.__traceback__))
    line = JsonFormatter().format(record)
    assert "Invalid phone number: [number]" in json.loads(line)["error"]
    assert not find_number(NUMBER, line)


def test_stack_info_is_redacted():
    record = _record("where", stack_info=f'  File "x.py", line 1, in f\n    send("{NUMBER}")')
    line = _format(record)
    assert not find_number(NUMBER, line)


def test_one_json_object_a_line():
    line = _format(_record("line one\nline two %s", NUMBER))
    assert line.count("\n") == 1 and line.endswith("\n")
    data = json.loads(line)
    assert data["message"] == "line one\nline two [number]"
    assert (data["level"], data["logger"]) == ("warning", "gateway.test")


def test_the_time_survives():
    record = _record("at %s", "x")
    record.created = datetime(2026, 11, 25, 8, 34, 18, 445000, tzinfo=UTC).timestamp()
    data = json.loads(_format(record))
    assert data["time"] == "2026-11-25T08:34:18.445000+00:00"
    assert datetime.fromisoformat(data["time"]).timestamp() == record.created


@pytest.mark.parametrize(
    "stamp",
    [
        "2026-11-25T08:34:18.445Z",
        "2026-11-25 08:34:18,123",
        "2026-11-25",
        "2026-11-25T08:34:18.123456+00:00",
        "2026-11-25T08:34:18+06:00",
    ],
)
def test_timestamps_in_messages_and_extras_survive(stamp):
    data = json.loads(_format(_record("digest due at %s", stamp, received_at=stamp)))
    assert data["message"] == f"digest due at {stamp}"
    assert data["received_at"] == stamp


def test_a_number_next_to_a_timestamp_still_goes():
    data = json.loads(_format(_record("at %s from %s", "2026-11-25 08:34:18", NUMBER)))
    assert data["message"] == "at 2026-11-25 08:34:18 from [number]"


@pytest.mark.parametrize(
    "text",
    [
        "answered 3 of 10 questions",
        "k=5, 12 respondents",
        "queue depth 123456",
        "took 0.25 s",
        "HTTP 403",
    ],
)
def test_ordinary_numbers_survive(text):
    assert json.loads(_format(_record(text)))["message"] == text


def test_development_format_redacts_and_keeps_its_timestamp():
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    line = _format(_record("reply to %s", NUMBER), formatter)
    assert "WARNING gateway.test: reply to [number]" in line
    assert line[:4].isdigit() and line[4] == "-"  # the asctime is intact
    assert not find_number(NUMBER, line)


@pytest.fixture
def root_logging():
    """Give back the root logger as it was (configure() replaces our handler on it)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield root
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.parametrize("production", [True, False])
def test_configure_installs_one_redacting_handler(root_logging, production):
    logs.configure(production)
    logs.configure(production)  # idempotent
    ours = [h for h in root_logging.handlers if getattr(h, "_workervoice", False)]
    assert len(ours) == 1
    stream = io.StringIO()
    ours[0].setStream(stream)
    logging.getLogger("rq.worker").warning("job for %s failed", NUMBER)
    line = stream.getvalue()
    assert "[number]" in line and not find_number(NUMBER, line)
    if production:
        assert json.loads(line)["logger"] == "rq.worker"


def test_a_librarys_extra_fields_are_not_written():
    # rq logs a failed job with extra={"arguments": job.args}: pseudonym and answers together.
    record = logging.LogRecord("rq.worker", logging.ERROR, __file__, 1, "job failed", None, None)
    record.arguments = ({"pseudonym": "ab" * 32, "events": [{"value": "yes"}]},)
    line = json.loads(_format(record))
    assert "arguments" not in line
    assert line["message"] == "job failed"
