"""Twilio Messaging (SMS and WhatsApp): POST /webhooks/twilio/sms, answered with TwiML."""

from __future__ import annotations

import re

from flask import Response, request
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from ..conversation import Inbound, handle
from ..engine.words import OPT_OUT_WORDS  # Twilio's standard words (PROVIDERS §8.1)
from ..identity import InvalidAddress
from ..services import current
from . import BadRequest, bounded, external_id, reject, required, sms, webhooks

MESSAGE_SID = re.compile(r"(SM|MM)[0-9a-fA-F]{32}")  # PROVIDERS.md §1.1: 34 characters
MAX_BODY = 1600  # Twilio's limit for one message body
MAX_MEDIA = 10  # media items one message can carry (PROVIDERS.md §1.1, error 21623)
# Longer is not a Twilio request. From: a number, or whatsapp: and a business-scoped user id
# (up to 128 characters after its country code).
LIMITS = {"From": 160, "MessageSid": 64, "Body": MAX_BODY}


def signature_ok(token: str | None, public_url: str) -> bool:
    """X-Twilio-Signature over the public base URL + path + query (PROVIDERS.md §3.4)."""
    signature = request.headers.get("X-Twilio-Signature", "")
    if not token or not signature:
        return False
    url = public_url + request.path
    if request.query_string:
        url += "?" + request.query_string.decode("latin-1")
    return RequestValidator(token).validate(url, request.form, signature)


def opted_out_at_twilio(form) -> bool:
    """Twilio took this message as an opt-out: it has confirmed it and blocks later sends.

    Its standard words, or with Advanced Opt-Out any keyword configured there (``OptOutType``).
    """
    word = (form.get("Body") or "").strip().upper()
    return word in OPT_OUT_WORDS or advanced_opt_out(form)


def advanced_opt_out(form) -> bool:
    """Twilio's Advanced Opt-Out took the message for an opt-out keyword configured there."""
    return form.get("OptOutType", "").upper() == "STOP"


def body_of(form) -> str:
    """The message text. A picture or a voice note sent without text may come with no Body
    field at all: it reads as an empty message, so the worker is asked again."""
    body = form.get("Body")
    if body is not None:
        return body
    media = form.get("NumMedia", "")
    if media.isascii() and media.isdigit() and 0 < int(media) <= MAX_MEDIA:
        return ""
    raise BadRequest("missing field 'Body'")


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
        body = body_of(request.form)
        bounded(request.form, LIMITS)
        message_id = external_id(message_id, "MessageSid")
        if not MESSAGE_SID.fullmatch(message_id):
            raise BadRequest("malformed field 'MessageSid'")
        if advanced_opt_out(request.form):
            body = "STOP"  # a keyword set up in Twilio's Advanced Opt-Out: STOP here too
        channel = "whatsapp" if sender.strip().lower().startswith("whatsapp:") else "sms"
        inbound = Inbound("twilio", channel, sender, message_id)
        reply = handle(services, inbound, sms.SmsTurn(body, channel)).reply
    except (BadRequest, InvalidAddress) as exc:
        return reject(400, str(exc))
    # Twilio confirms its own opt-out words and blocks later sends itself: an empty Response
    # (a retry too, though it is answered from the reply cache). A translated STOP, which Twilio
    # does not know, gets the service's confirmation in the worker's language.
    return twiml(None if opted_out_at_twilio(request.form) else reply)
