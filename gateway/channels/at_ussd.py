"""Africa's Talking USSD: POST /webhooks/at/ussd?token=... (PROVIDERS.md §4), answered at once
with ``text/plain`` ``CON <screen>`` (the session waits for the worker) or ``END <screen>`` (AT
closes it). The reply is computed inside the request: AT waits for it and there is no retry.

``UssdTurn`` keeps in the dialog's state (keyed by AT's sessionId) the digest of the last text,
how many of its ``*`` parts were consumed, the reply it got, and the pages of the outcome shown
with the page on screen and the page its question is answered from; gateway/channels/ussd.py
says how a cumulative text is read.

Paging: ``98`` shows the next page and ``00`` the previous one when the screen on the worker's
phone has one (and the text extends the one that screen answered); otherwise they are ordinary
input. The worker can only answer what they have seen: on a page of a waiting screen before the
one the pending question is answered from (the first page showing one of its options; for a
question without options, a number, a text or a workplace code, the page where its prompt ends),
every input shows the next page instead of being applied, but ``00`` on a page with one before
it (which it shows). STOP, HELP and LANG (and the opt-out words) are applied all the same: they
answer no question, and a worker who wants out must never have to page first.
A closing screen (the outcome ends) longer than a page is shown with ``CON`` page by page, its
last page with ``END``; on its pages likewise every input but ``00`` shows the next page, since
there is nothing left to answer.

POST /webhooks/at/ussd/events takes AT's end-of-session notification (§4.4): the dialog is
over (answers given are kept for a resume), answered 200 with an empty body.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Response, request

from ..conversation import Inbound, Turned, handle
from ..engine import words
from ..engine.events import Step
from ..engine.inputs import DialIn, HangUp, Message
from ..engine.keywords import RESERVED, keyword_forms
from ..engine.parsing import ascii_digits, clean
from ..engine.screens import BACK_KEY, NEXT_KEY
from ..engine.session import Session
from ..engine.texts import Texts
from ..identity import InvalidAddress
from ..services import Services, current
from ..sessions import Dialog
from . import BadRequest, bounded, external_id, reject, required, ussd, webhooks
from .at_sms import token_ok

# Our cap on the cumulative text (AT documents none): a 180-second session holds a few dozen
# inputs of a few characters; a longer text is not a USSD session.
MAX_TEXT = 4000
LIMITS = {
    "sessionId": 100,
    "phoneNumber": 64,
    "networkCode": 16,
    "serviceCode": 64,
    "text": MAX_TEXT,
}
EVENT_LIMITS = {
    **LIMITS,
    "input": MAX_TEXT,
    "lastAppResponse": 1000,
    "date": 64,
    "status": 32,
    "cost": 64,
    "durationInMillis": 32,
    "hopsCount": 16,
    "errorMessage": 1000,
}
CON, END = "CON ", "END "


@dataclass(frozen=True)
class UssdTurn:
    """One USSD request: the newest input of its cumulative text, or a page of the last
    outcome. Every question type can be put on USSD. ``command`` tells a reserved word (STOP,
    HELP, LANG), which is applied from any page of a waiting screen."""

    session_id: str
    text: str
    unsupported: frozenset[str] = frozenset()
    command: Callable[[str], bool] = lambda text: False

    def read(self, dialog: Dialog, session: Session) -> Turned:
        state = dialog.state
        reading = ussd.read(self.session_id, self.text, _seen(state), _count(state, "parts"))
        state["seen"] = ussd.text_digest(self.session_id, self.text)
        state["parts"] = reading.parts
        if reading.retry and isinstance(state.get("reply"), str):
            return Turned(reply=state["reply"])
        if reading.newest is None:
            return Turned(DialIn())
        if reading.extends:
            page = _turn_page(state, reading.newest, self.command(reading.newest))
            if page is not None:
                return Turned(reply=page)
        return Turned(Message(reading.newest))

    def render(self, step: Step, dialog: Dialog, texts: Texts) -> str:
        state = dialog.state
        shown = ussd.outcome(step, texts)
        state["pages"] = shown.pages
        state["page"] = 0
        state["answer_page"] = shown.answer_page
        state["ends"] = step.ended
        state["reply"] = _shown(state)
        return state["reply"]


@dataclass(frozen=True)
class UssdEnded:
    """AT's end-of-session notification: a hang-up, answered with nothing."""

    text: str = ""
    unsupported: frozenset[str] = frozenset()

    def read(self, dialog: Dialog, session: Session) -> Turned:
        return Turned(HangUp())

    def render(self, step: Step, dialog: Dialog, texts: Texts) -> str:
        return ""


def _seen(state: dict[str, Any]) -> str | None:
    seen = state.get("seen")
    return seen if isinstance(seen, str) else None


def _count(state: dict[str, Any], name: str) -> int:
    value = state.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _pages(state: dict[str, Any]) -> list[str]:
    pages = state.get("pages")
    if isinstance(pages, list) and pages and all(isinstance(p, str) for p in pages):
        return pages
    return []


def _turn_page(state: dict[str, Any], key: str, command: bool) -> str | None:
    """The page the key turns to on the screen last shown, or None when it turns no page. On
    every page of a closing screen (which asks nothing) any key turns to the next page, and so
    does any key but a ``command`` on a page before the one the question is answered from."""
    pages, page = _pages(state), _count(state, "page")
    if page >= len(pages):
        return None
    closing = state.get("ends") is True
    unseen = not closing and not command and page < _count(state, "answer_page")
    digits = ascii_digits(key)  # a Bangla keypad may send ৯৮
    if digits == BACK_KEY and page > 0:
        state["page"] = page - 1
    elif page < len(pages) - 1 and (digits == NEXT_KEY or closing or unseen):
        state["page"] = page + 1
    else:
        return None
    state["reply"] = _shown(state)
    return state["reply"]


def _commands(services: Services) -> Callable[[str], bool]:
    """Whether an input is a reserved word, matched as the engine matches it (runtime.py)."""
    flows, texts = services.registry.current()
    forms = keyword_forms(flows, texts)

    def command(text: str) -> bool:
        word = clean(text).upper()
        return word in words.OPT_OUT_WORDS or any(forms.is_reserved(word, k) for k in RESERVED)

    return command


def _shown(state: dict[str, Any]) -> str:
    """The reply showing the current page: END on the last page of a closing screen."""
    pages, page = _pages(state) or [""], _count(state, "page")
    last = page >= len(pages) - 1
    return (END if state.get("ends") is True and last else CON) + pages[min(page, len(pages) - 1)]


@webhooks.post("/at/ussd")
def at_ussd() -> Response:
    services = current()
    if not token_ok(services.config.at_webhook_token):
        return reject(403, "invalid webhook token")
    try:
        session_id, phone, text = required(request.form, "sessionId", "phoneNumber", "text")
        bounded(request.form, LIMITS)
        session_id = external_id(session_id, "sessionId")
        message_id = ussd.message_id(session_id, text)
        inbound = Inbound("at", "ussd", phone, message_id, dialog=session_id)
        turn = UssdTurn(session_id, text, command=_commands(services))
        reply = handle(services, inbound, turn).reply
    except (BadRequest, InvalidAddress) as exc:
        return reject(400, str(exc))
    return Response(reply, status=200, mimetype="text/plain")


@webhooks.post("/at/ussd/events")
def at_ussd_events() -> Response:
    services = current()
    if not token_ok(services.config.at_webhook_token):
        return reject(403, "invalid webhook token")
    try:
        session_id, phone = required(request.form, "sessionId", "phoneNumber")
        bounded(request.form, EVENT_LIMITS)
        session_id = external_id(session_id, "sessionId")
        inbound = Inbound("at", "ussd", phone, ussd.end_id(session_id), dialog=session_id)
        handle(services, inbound, UssdEnded())
    except (BadRequest, InvalidAddress) as exc:
        return reject(400, str(exc))
    return Response("", status=200, mimetype="text/plain")
