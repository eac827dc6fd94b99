"""How an SMS (or WhatsApp) message reads as an engine input, and how the engine's events read
as one reply, for every SMS channel (Twilio, AT)."""

from __future__ import annotations

from dataclasses import dataclass

from ..conversation import Turned
from ..engine.events import Ask, Event, Say, Step
from ..engine.inputs import DialIn, Message
from ..engine.segments import sms_prompt  # the layout lint measures, so the two agree
from ..engine.session import Session
from ..engine.texts import Texts
from ..sessions import Dialog

# Channels whose messages stay on the worker's phone screen: a question put on one of them can
# be answered on another (the same number's SMS and WhatsApp are one conversation).
TEXT_CHANNELS = frozenset({"sms", "whatsapp"})


def render(events: tuple[Event, ...]) -> str:
    """Messages and prompts in order, a blank line apart; options numbered from 1, one a line."""
    parts: list[str] = []
    for event in events:
        if isinstance(event, Say):
            parts.append(event.text)
        elif isinstance(event, Ask):
            parts.append(sms_prompt(event.text, event.options))
    return "\n\n".join(parts)


@dataclass(frozen=True)
class SmsTurn:
    """One text message. It answers the pending question when that question was put on this
    channel; when it was put on another (the worker dropped a USSD session or a call and now
    texts), the message begins a new dialog here instead, where the worker is offered to
    resume: they never saw the question on this phone screen."""

    text: str
    channel: str = "sms"  # or whatsapp
    unsupported: frozenset[str] = frozenset()

    def read(self, dialog: Dialog, session: Session) -> Turned:
        elsewhere = session.current is not None and session.channel not in (None, *TEXT_CHANNELS)
        return Turned(DialIn(self.text) if elsewhere else Message(self.text))

    def render(self, step: Step, dialog: Dialog, texts: Texts) -> str:
        return render(step.events)
