"""Channel adapters: one module per provider channel. Parse and authenticate, nothing else."""

from __future__ import annotations

from flask import Blueprint, Response

webhooks = Blueprint("webhooks", __name__, url_prefix="/webhooks")


class BadRequest(Exception):
    """A provider request with missing or malformed fields: 400, nothing changes."""


def reject(status: int, reason: str) -> Response:
    """A one-line plain-text refusal (403 authentication, 400 malformed)."""
    return Response(reason + "\n", status=status, mimetype="text/plain")


def required(form, *names: str) -> list[str]:
    """The named form fields, or BadRequest naming the first one missing."""
    values = []
    for name in names:
        value = form.get(name)
        if value is None:
            raise BadRequest(f"missing field '{name}'")
        values.append(value)
    return values


from . import at_sms, twilio_sms  # noqa: E402,F401  (registers the routes)
