"""Africa's Talking Voice: POST /webhooks/at/voice?token=... (the call, every <GetDigits>
callback, the no-input <Redirect>, and the final ``isActive=0`` notification), answered with
AT's XML (PROVIDERS.md §6).

``<GetDigits>`` nests exactly one ``<Say>`` or ``<Play>``, and AT's ``<Say>`` speaks English
only: a turn is one ``<Play>`` of its recordings in sequence when every utterance has one, else
one ``<Say>`` (the English source text where the language is not English). Silence runs the next
action, which AT does not report: the ``<Redirect>`` after ``<GetDigits>`` reports it.
A first request with ``callerNumber`` empty or withheld hears, in English, to call again with the
number shown, and nothing is kept.
"""

from __future__ import annotations

from urllib.parse import quote
from xml.etree.ElementTree import Element, SubElement, tostring
from xml.sax.saxutils import escape

from flask import Response, request

from ..audio import AudioLibrary
from ..conversation import handle
from ..engine.texts import SOURCE_LANGUAGE
from ..identity import InvalidAddress, e164
from ..services import current
from . import BadRequest, bounded, external_id, reject, required, voice, webhooks
from .at_sms import token_ok

PATH = "/webhooks/at/voice"
LIMITS = {
    "sessionId": 100,
    "callerNumber": 64,
    "destinationNumber": 64,
    "dtmfDigits": voice.MAX_DIGITS,
    "direction": 32,
    "isActive": 1,
}
QUERY_LIMITS = {"n": 8, "noinput": 8}
SAY_VOICE = "woman"  # AT's English voices: man, woman
DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>'
# In place of the webhook token in the URLs a document names, until the response goes out: the
# reply cache keeps documents for a day, and a secret has no business there. urlencode and XML
# leave these characters as they are.
TOKEN_MARK = "__WV_AT_WEBHOOK_TOKEN__"


def said_as_one(said: tuple[voice.Spoken, ...], audio: AudioLibrary) -> Element | None:
    """A turn's utterances as one element: the recordings played in sequence, or one <Say>."""
    if not said:
        return None
    url = audio.sequence_url([s.said for s in said])
    if url is not None:
        return Element("Play", {"url": url})
    element = Element("Say", {"voice": SAY_VOICE})
    element.text = voice.joined(
        s.said.text if s.said.language == SOURCE_LANGUAGE else s.fallback() for s in said
    )
    return element


def document(prompt: voice.Prompt, audio: AudioLibrary) -> str:
    root = Element("Response")
    said = said_as_one(prompt.said, audio)
    if prompt.waiting is None:
        if said is not None:
            root.append(said)  # and nothing else: the call ends
        return DECLARATION + tostring(root, encoding="unicode")
    attributes = {
        "timeout": str(prompt.timeout),
        "finishOnKey": voice.END_KEY,
        "callbackUrl": prompt.action,
    }
    if prompt.one_key:
        attributes["numDigits"] = "1"
    digits = SubElement(root, "GetDigits", attributes)
    if said is not None:
        digits.append(said)
    SubElement(root, "Redirect").text = prompt.no_input
    return DECLARATION + tostring(root, encoding="unicode")


def rejected() -> str:
    """Refused unanswered: free for the caller (PROVIDERS.md §6.2)."""
    root = Element("Response")
    SubElement(root, "Reject")
    return DECLARATION + tostring(root, encoding="unicode")


def with_token(text: str, token: str) -> str:
    """The document with the webhook token in place of its mark, escaped for a URL's query and
    for XML (attribute and text alike)."""
    escaped = escape(quote(token, safe=""), {'"': "&quot;"})
    return text.replace(f"token={TOKEN_MARK}", f"token={escaped}")


def xml(text: str) -> Response:
    if not text:  # the final notification: 200, empty
        return Response("", status=200, mimetype="text/plain")
    return Response(text, mimetype="application/xml")


@webhooks.post("/at/voice")
def at_voice() -> Response:
    services = current()
    token = services.config.at_webhook_token
    if not token_ok(token):
        return reject(403, "invalid webhook token")
    form = request.form
    try:
        session_id, caller, active = required(form, "sessionId", "callerNumber", "isActive")
        bounded(form, LIMITS)
        bounded(request.args, QUERY_LIMITS)
        session_id = external_id(session_id, "sessionId")
        if active not in ("0", "1"):
            raise BadRequest("malformed field 'isActive'")
        call = voice.read_call(
            session_id, request.args, form.get("dtmfDigits"), active == "0", "dtmfDigits"
        )
        # A withheld number ringing a callback number is rejected too (no one to call back).
        if call.first and form.get("direction", "").lower() == "inbound":
            if voice.missed_call(services, "at", caller, form.get("destinationNumber", "")):
                return xml(rejected())
        if voice.withheld(caller):
            prompt = voice.to_withheld(services, call)
            return xml(document(prompt, services.audio) if prompt is not None else "")
        e164(caller)  # a caller we cannot pseudonymise is refused before anything happens
        # The reply is cached as rendered (for a day): it holds a mark, not the token.
        link = voice.Link(services.config.public_url + PATH, (("token", TOKEN_MARK),))
        inbound, turn = voice.conversation(
            services, "at", caller, call, link, lambda p: document(p, services.audio), ""
        )
        reply = handle(services, inbound, turn).reply
    except (BadRequest, InvalidAddress) as exc:
        return reject(400, str(exc))
    return xml(with_token(reply, token or ""))
