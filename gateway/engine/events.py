"""Typed events the engine emits; the caller renders some and persists others."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, TypeVar

from .session import Session


@dataclass(frozen=True)
class Event:
    kind: ClassVar[str] = "event"
    persist: ClassVar[bool] = False

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **asdict(self)}


@dataclass(frozen=True)
class Say(Event):
    """Words for the worker that need no answer (confirmation, error, finish)."""

    kind: ClassVar[str] = "say"
    text: str


@dataclass(frozen=True)
class Ask(Event):
    """A question for the worker, already translated; options are shown numbered from 1."""

    kind: ClassVar[str] = "ask"
    flow: str
    question: str
    type: str
    text: str
    options: tuple[str, ...] = ()
    min: float | None = None
    max: float | None = None
    language: str | None = None


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
class Declined(Event):
    """The worker declined consent: nothing about them is kept."""

    kind: ClassVar[str] = "declined"


E = TypeVar("E", bound=Event)


@dataclass(frozen=True)
class Step:
    """What one input produced: the new session (None = session over) and the events."""

    session: Session | None
    events: tuple[Event, ...] = field(default_factory=tuple)

    def of(self, cls: type[E]) -> list[E]:
        """The events of one kind, in order."""
        return [e for e in self.events if isinstance(e, cls)]
