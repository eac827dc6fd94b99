"""Structured logs that never hold a phone number.

Production writes one JSON object a line. Every record, from our code or a library's, passes
through ``RedactNumbers``, which replaces anything shaped like a phone number (7 or more digits,
whatever the separators or script) in the message, the traceback and any extra field: a defence
in depth behind the rule that no code logs one. ISO dates and timestamps survive.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from .identity import redact_phone_like

REDACTED = "[number]"
STANDARD_ATTRS = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def _redact(value: Any) -> Any:
    """A copy of value with every string in it redacted (dicts, lists and tuples walked)."""
    if isinstance(value, str):
        return redact_phone_like(value, REDACTED)
    if isinstance(value, dict):
        return {_redact(str(k)): _redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return _redact(bytes(value).decode("utf-8", "replace"))
    return value


# Only our own loggers' extra fields are written: a library's (rq adds a failed job's arguments)
# could tie a pseudonym to its answers in a log line.
OWN_LOGGERS = ("gateway", "store", "aggregator")


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    if not record.name.startswith(OWN_LOGGERS):
        return {}
    return {
        k: v
        for k, v in record.__dict__.items()
        if k not in STANDARD_ATTRS and not k.startswith("_")
    }


class RedactNumbers(logging.Filter):
    """Redacts the message, the traceback and the extra fields of every record it sees.

    Extras are replaced by redacted copies: the caller's own objects are never changed.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg, record.args = _redact(message), None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = _redact(record.exc_text)
        if record.stack_info:
            record.stack_info = _redact(record.stack_info)
        for key, value in _extras(record).items():
            setattr(record, key, _redact(value))
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (ISO 8601 UTC), level, logger, message, extras, error."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **_extras(record),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            data["error"] = record.exc_text
        if record.stack_info:
            data["stack"] = record.stack_info
        data = {k: _redact(v) for k, v in data.items()}
        data = {"time": datetime.fromtimestamp(record.created, UTC).isoformat(), **data}
        return json.dumps(data, ensure_ascii=False, default=lambda v: _redact(str(v)))


def configure(production: bool, level: int = logging.INFO) -> None:
    """Install one handler on the root logger (idempotent)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_workervoice", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._workervoice = True  # type: ignore[attr-defined]
    handler.addFilter(RedactNumbers())
    handler.setFormatter(
        JsonFormatter()
        if production
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root.addHandler(handler)
    root.setLevel(level)
