"""Channel adapters: one module per provider channel. Parse and authenticate, nothing else."""

from __future__ import annotations

import re
from collections.abc import Mapping

from flask import Blueprint, Response

from ..errors import plain_error

webhooks = Blueprint("webhooks", __name__, url_prefix="/webhooks")

# A provider's message id is the key its retries are recognised by: a short plain token.
EXTERNAL_ID = re.compile(r"[A-Za-z0-9_.:\-]+")


class BadRequest(Exception):
    """A provider request with missing or malformed fields: 400, nothing changes."""


def reject(status: int, reason: str) -> Response:
    """A one-line plain-text refusal (403 authentication, 400 malformed)."""
    return plain_error(status, reason)


def required(form: Mapping[str, str], *names: str) -> list[str]:
    """The named form fields, or BadRequest naming the first one missing."""
    values = []
    for name in names:
        value = form.get(name)
        if value is None:
            raise BadRequest(f"missing field '{name}'")
        values.append(value)
    return values


def bounded(form: Mapping[str, str], limits: Mapping[str, int]) -> None:
    """BadRequest naming the first field longer than its limit (characters) or holding a NUL
    (no provider sends one, and PostgreSQL text cannot store one)."""
    for name, limit in limits.items():
        value = form.get(name)
        if value is not None and len(value) > limit:
            raise BadRequest(f"field '{name}' is longer than {limit} characters")
        if value is not None and "\x00" in value:
            raise BadRequest(f"field '{name}' holds a NUL character")


def external_id(value: str, name: str) -> str:
    """The provider's message id, or BadRequest if it is empty or not a plain token."""
    if not value:
        raise BadRequest(f"empty field '{name}'")
    if not EXTERNAL_ID.fullmatch(value):
        raise BadRequest(f"malformed field '{name}'")
    return value


from . import at_sms, at_ussd, at_voice, twilio_sms, twilio_voice  # noqa: E402,F401  (registers the routes)
