"""Twilio Voice: POST /webhooks/twilio/voice (the call, every <Gather> action, every <Redirect>,
and the call's status callback), signed like SMS and answered with TwiML (PROVIDERS.md §2).

While a question is pending: ``<Gather input="dtmf">`` holding the prompt and "press N for ..."
(one key for a menu of up to 9 options, else keys ended by #), then a ``<Redirect>`` for silence.
Each utterance is the recording of it when there is one (``<Play>``), else ``<Say>`` in a voice
Twilio has for its language. When the dialog ends: what is left to say, then ``<Hangup/>``.
A withheld caller (``anonymous``, ``unknown``, ``client:<name>``) hears, in English, to call again
with their number shown, then ``<Hangup/>``; nothing is kept.
"""

from __future__ import annotations

import re

from flask import Response, request
from twilio.twiml import TwiML
from twilio.twiml.voice_response import VoiceResponse

from ..conversation import handle
from ..identity import InvalidAddress, e164
from ..services import current
from . import BadRequest, bounded, reject, required, voice, webhooks
from .twilio_sms import signature_ok

PATH = "/webhooks/twilio/voice"
CALL_SID = re.compile(r"CA[0-9a-fA-F]{32}")  # PROVIDERS.md §2.1: 34 characters
LIMITS = {
    "CallSid": 64,
    "From": 64,
    "To": 64,
    "Digits": voice.MAX_DIGITS,
    "CallStatus": 32,
    "Direction": 32,
}
QUERY_LIMITS = {"n": 8, "noinput": 8}
ENDED = frozenset({"completed", "busy", "failed", "no-answer", "canceled"})  # CallStatus
# Twilio's text-to-speech per language (PROVIDERS.md §2.4): (language, voice). Swahili has none.
VOICES = {
    "bn": ("bn-IN", "Google.bn-IN-Standard-A"),  # no bn-BD voice: the Indian one
    "hi": ("hi-IN", "Google.hi-IN-Standard-A"),
    "ta": ("ta-IN", "Google.ta-IN-Standard-C"),  # C/D are documented; A may fail
    "ms": ("ms-MY", "Google.ms-MY-Standard-A"),
    "en": ("en-US", "Google.en-US-Standard-C"),
}
ENGLISH = VOICES["en"]
HUNG_UP = str(VoiceResponse())  # the answer to the status callback: nothing to do


def speak(verb: TwiML, said: voice.Spoken) -> None:
    """One utterance into a <Response> or <Gather>: its recording, else its language's voice,
    else the English source text in English."""
    if said.url is not None:
        verb.play(said.url)
        return
    found = VOICES.get(said.said.language)
    if found is not None:
        text = said.said.text
    else:
        text, found = said.fallback(), ENGLISH
    language, name = found
    verb.say(text, language=language, voice=name)


def twiml(prompt: voice.Prompt) -> str:
    response = VoiceResponse()
    if prompt.waiting is None:
        for said in prompt.said:
            speak(response, said)
        response.hangup()
        return str(response)
    keys = {"num_digits": 1} if prompt.one_key else {"finish_on_key": voice.END_KEY}
    gather = response.gather(
        input="dtmf",
        action=prompt.action,
        method="POST",
        action_on_empty_result=True,
        timeout=prompt.timeout,
        **keys,
    )
    for said in prompt.said:
        speak(gather, said)
    response.redirect(prompt.no_input, method="POST")  # should the Gather not call its action
    return str(response)


def rejected() -> str:
    """Refused unanswered: the call costs the caller nothing (PROVIDERS.md §2.5)."""
    response = VoiceResponse()
    response.reject()
    return str(response)


def xml(text: str) -> Response:
    return Response(text, mimetype="text/xml")


@webhooks.post("/twilio/voice")
def twilio_voice() -> Response:
    services = current()
    if not signature_ok(services.config.twilio_auth_token, services.config.public_url):
        return reject(403, "invalid Twilio signature")
    form = request.form
    try:
        outbound = form.get("Direction", "").lower().startswith("outbound")
        # The worker: the caller, or on a call we placed (a missed-call callback) the callee.
        call_sid, worker = required(form, "CallSid", "To" if outbound else "From")
        bounded(form, LIMITS)
        bounded(request.args, QUERY_LIMITS)
        if not CALL_SID.fullmatch(call_sid):
            raise BadRequest("malformed field 'CallSid'")
        ended = form.get("CallStatus", "").lower() in ENDED
        call = voice.read_call(call_sid, request.args, form.get("Digits"), ended, "Digits")
        # A withheld number ringing a callback number is rejected too (no one to call back).
        if call.first and not outbound:
            if voice.missed_call(services, "twilio", worker, form.get("To", "")):
                return xml(rejected())
        if not outbound and voice.withheld(worker):
            prompt = voice.to_withheld(services, call)
            return xml(twiml(prompt) if prompt is not None else HUNG_UP)
        e164(worker)  # a number we cannot pseudonymise is refused before anything happens
        link = voice.Link(services.config.public_url + PATH)
        inbound, turn = voice.conversation(services, "twilio", worker, call, link, twiml, HUNG_UP)
        reply = handle(services, inbound, turn).reply
    except (BadRequest, InvalidAddress) as exc:
        return reject(400, str(exc))
    return xml(reply)
