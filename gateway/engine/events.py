"""Typed events the engine emits; the caller renders some and persists others."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, TypeVar

from .session import Session


@dataclass(frozen=True)
class Event:
    kind: ClassVar[str] = "event"
    persist: ClassVar[bool] = False

    def to_dict(self) -> dict[str, Any]:
        # The fields as they are, not dataclasses.asdict's deep copies: an event's fields are
        # str, numbers, None and tuples of those (the persisted ones: tests/engine).
        return {"kind": self.kind, **{f.name: getattr(self, f.name) for f in fields(self)}}


@dataclass(frozen=True)
class Say(Event):
    """Words for the worker that need no answer (confirmation, error, info, finish), already
    translated. ``msgid`` is the untranslated text (a flows.po msgid when ``flow`` is given,
    else one of the service's words in words.py) and ``values`` what was put into its
    placeholders, so a channel may word it its own way (voice says "press", not "reply") or
    play a recording of it. ``question`` is the info question it is, or FINISH for a flow's
    finish text."""

    kind: ClassVar[str] = "say"
    text: str
    msgid: str = ""
    language: str | None = None
    flow: str | None = None
    question: str | None = None
    values: tuple[tuple[str, str], ...] = ()

    @property
    def service(self) -> bool:
        """One of the service's own words (words.py), not a flow's text."""
        return self.flow is None


@dataclass(frozen=True)
class Ask(Event):
    """A question for the worker, already translated; options are shown numbered from 1.

    ``values`` are the options' stored values in the same order (language codes for a language
    menu, whose options each channel may speak in their own language). ``source`` is the id of
    the question in its flow file the prompt comes from ('' for the service's own menus, such as
    the resume screen); ``msgid`` is the untranslated ask text."""

    kind: ClassVar[str] = "ask"
    flow: str
    question: str
    type: str
    text: str
    options: tuple[str, ...] = ()
    min: float | None = None
    max: float | None = None
    language: str | None = None
    values: tuple[str, ...] = ()
    source: str = ""
    msgid: str = ""


@dataclass(frozen=True)
class AnswerRecorded(Event):
    kind: ClassVar[str] = "answer_recorded"
    persist: ClassVar[bool] = True
    flow: str
    version: str
    question: str
    value: str | float
    at: str  # ISO 8601 UTC
    workplace: str | None = None


@dataclass(frozen=True)
class Enrolled(Event):
    kind: ClassVar[str] = "enrolled"
    persist: ClassVar[bool] = True
    language: str
    workplace: str
    at: str  # ISO 8601 UTC


@dataclass(frozen=True)
class LanguageChanged(Event):
    kind: ClassVar[str] = "language_changed"
    persist: ClassVar[bool] = True
    language: str
    at: str  # ISO 8601 UTC, when the worker chose it


@dataclass(frozen=True)
class FlowFinished(Event):
    kind: ClassVar[str] = "flow_finished"
    flow: str


@dataclass(frozen=True)
class OptedOut(Event):
    """The worker sent STOP: forget the profile, session and contact at once."""

    kind: ClassVar[str] = "opted_out"
    persist: ClassVar[bool] = True


@dataclass(frozen=True)
class ContactAgreed(Event):
    """The worker agreed to be contacted for ``purposes``. The engine never sees the number:
    the hop seals it into the event, the drain keeps it in the contact vault."""

    kind: ClassVar[str] = "contact_agreed"
    persist: ClassVar[bool] = True
    question: str
    purposes: tuple[str, ...]
    at: str  # ISO 8601 UTC


@dataclass(frozen=True)
class Consented(Event):
    """The worker agreed to licence version ``licence`` (at enrolment, or again after the
    licence changed): a row of the consent ledger (store/consents.py)."""

    kind: ClassVar[str] = "consented"
    persist: ClassVar[bool] = True
    licence: str
    language: str
    channel: str
    at: str  # ISO 8601 UTC


@dataclass(frozen=True)
class ContactDeclined(Event):
    """The worker did not agree (or no longer agrees): any contact kept for them goes."""

    kind: ClassVar[str] = "contact_declined"
    persist: ClassVar[bool] = True
    question: str
    at: str  # ISO 8601 UTC


@dataclass(frozen=True)
class Erased(Event):
    """The worker confirmed DELETE: besides what OptedOut (which comes with it) forgets, every
    answer that can still be linked to them goes, and nothing from before may come back."""

    kind: ClassVar[str] = "erased"
    persist: ClassVar[bool] = True


@dataclass(frozen=True)
class Declined(Event):
    """The worker declined consent: nothing about them is kept."""

    kind: ClassVar[str] = "declined"


E = TypeVar("E", bound=Event)


@dataclass(frozen=True)
class Step:
    """A turn's outcome: the new session (None = the worker is forgotten or was never kept),
    the events, and the language they are in. The dialog waits for an answer when the last
    prompt is a question still pending (``waiting``); otherwise it ends, so USSD can choose
    ``CON`` or ``END`` and voice ``<Gather>`` or ``<Hangup>`` without reading the text."""

    session: Session | None
    events: tuple[Event, ...] = field(default_factory=tuple)
    language: str | None = None

    @property
    def waiting(self) -> Ask | None:
        """The question the dialog now waits on; None when the dialog ends."""
        if self.session is None or self.session.current is None:
            return None
        asks = self.of(Ask)
        return asks[-1] if asks and asks[-1].question == self.session.current else None

    @property
    def ended(self) -> bool:
        return self.waiting is None

    def of(self, cls: type[E]) -> list[E]:
        """The events of one kind, in order."""
        return [e for e in self.events if isinstance(e, cls)]
