"""Structured logs that never hold a phone number.

Production writes one JSON object a line. Every record, from our code or a library's, passes
through ``RedactNumbers``, which replaces anything shaped like a phone number: a defence in depth
behind the rule that no code logs one.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime

# 7+ digits, optionally led by + and broken by spaces, dots, dashes or brackets, standing alone
# (not inside a word, so job ids and hex digests stay readable).
PHONE_LIKE = re.compile(r"(?<![\w+])\+?\d[\d\s().\-]{5,}\d(?!\w)")
STANDARD_ATTRS = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def _redact(text: str) -> str:
    return PHONE_LIKE.sub(lambda m: "[number]" if sum(c.isdigit() for c in m.group()) >= 7
                          else m.group(), text)


class RedactNumbers(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg, record.args = _redact(message), None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = _redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in STANDARD_ATTRS and not key.startswith("_"):
                data[key] = value
        if record.exc_text:
            data["error"] = record.exc_text
        return json.dumps({k: _redact(v) if isinstance(v, str) and k != "time" else v
                           for k, v in data.items()}, ensure_ascii=False, default=str)


def configure(production: bool, level: int = logging.INFO) -> None:
    """Install one handler on the root logger (idempotent)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_workervoice", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._workervoice = True  # type: ignore[attr-defined]
    handler.addFilter(RedactNumbers())
    handler.setFormatter(JsonFormatter() if production else
                         logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level)
