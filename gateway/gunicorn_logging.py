"""gunicorn's own logs (the access log and its error log) under the rules every log obeys: no
phone number (``logs.RedactNumbers``, as for every other record), no secret from a query string
(the Africa's Talking webhook token travels in one, and a malformed request line is quoted
whole in the error log), and one record a line (a control character decoded from the path,
such as ``%0a``, is written escaped, so a request cannot forge a log line).

The Procfile's web process uses it through ``logger_class`` in gateway/gunicorn_conf.py.
"""

from __future__ import annotations

import logging
import re

from gunicorn import glogging

from .logs import RedactNumbers

SECRET_QUERY = re.compile(r"(?i)\b(token|api_?key|key|signature|password)=[^&\s'\"]*")
CONTROL = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")


def _escaped(match: re.Match[str]) -> str:
    return f"\\x{ord(match.group()):02x}"


class ServerLines(logging.Filter):
    """A gunicorn record's message with query secrets blanked and control characters escaped."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = SECRET_QUERY.sub(r"\1=[redacted]", record.getMessage())
        record.msg, record.args = CONTROL.sub(_escaped, message), None
        return True


class Logger(glogging.Logger):
    """gunicorn's logger with ``ServerLines`` and ``RedactNumbers`` on both of its logs."""

    def setup(self, cfg) -> None:
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            if not any(isinstance(f, ServerLines) for f in log.filters):  # setup runs again on HUP
                log.addFilter(ServerLines())
                log.addFilter(RedactNumbers())
