"""Twilio Messaging (SMS and WhatsApp): POST /webhooks/twilio/sms, answered with TwiML."""

from __future__ import annotations

from flask import Response, request
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from ..conversation import Inbound, handle
from ..identity import InvalidAddress
from ..services import current
from . import BadRequest, reject, required, webhooks

MAX_BODY = 1600  # Twilio's limit for one message body


def signature_ok(token: str | None, public_url: str) -> bool:
    """X-Twilio-Signature over the public base URL + path + query (PROVIDERS.md §3.4)."""
    signature = request.headers.get("X-Twilio-Signature", "")
    if not token or not signature:
        return False
    url = public_url + request.path
    if request.query_string:
        url += "?" + request.query_string.decode("latin-1")
    return RequestValidator(token).validate(url, request.form, signature)


def twiml(text: str | None) -> Response:
    response = MessagingResponse()
    if text:
        response.message(text[:MAX_BODY])
    return Response(str(response), mimetype="text/xml")


@webhooks.post("/twilio/sms")
def twilio_sms() -> Response:
    services = current()
    if not signature_ok(services.config.twilio_auth_token, services.config.public_url):
        return reject(403, "invalid Twilio signature")
    try:
        sender, message_id = required(request.form, "From", "MessageSid")
        body = request.form.get("Body")
        if body is None:
            raise BadRequest("missing field 'Body'")
        reply = handle(services, Inbound("twilio", "sms", sender, body, message_id))
    except (BadRequest, InvalidAddress) as exc:
        return reject(400, str(exc))
    # Twilio confirms opt-outs and blocks later sends itself: answer STOP with an empty Response.
    return twiml(None if reply.opted_out else reply.text)
