"""Africa's Talking incoming SMS: POST /webhooks/at/sms?token=...

AT ignores the response body, so the reply goes out through the AT SMS API from the outbox
(gateway/outbox.py), whose entries carry the recipient sealed, never in clear.
"""

from __future__ import annotations

import hmac

from flask import Response, request

from ..conversation import Inbound, handle
from ..identity import InvalidAddress, parse
from ..outbound import seal_recipient
from ..services import current
from . import BadRequest, bounded, external_id, reject, required, sms, webhooks

MAX_TEXT = 1600  # our cap on one inbound message (AT documents none); longer is refused
LIMITS = {"from": 64, "id": 100, "text": MAX_TEXT}


def token_ok(expected: str | None) -> bool:
    given = request.args.get("token", "")
    return expected is not None and hmac.compare_digest(given.encode(), expected.encode())


@webhooks.post("/at/sms")
def at_sms() -> Response:
    services = current()
    if not token_ok(services.config.at_webhook_token):
        return reject(403, "invalid webhook token")
    try:
        sender, text, message_id = required(request.form, "from", "text", "id")
        bounded(request.form, LIMITS)
        message_id = external_id(message_id, "id")
        number = parse(sender)  # read once: sealed for the reply, then pseudonymised
        sealed = seal_recipient(services, number.e164)
        inbound = Inbound("at", "sms", number, message_id, sealed_sender=sealed)
        # The reply goes to the outbox in the hop's own commit. A provider retry is answered
        # from the reply cache: its reply went to the outbox the first time, and only then.
        handle(services, inbound, sms.SmsTurn(text))
    except (BadRequest, InvalidAddress) as exc:
        return reject(400, str(exc))
    return Response("", status=200, mimetype="text/plain")
