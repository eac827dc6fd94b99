"""What the run (runtime._Run) provides to its mixins (answers.py, consent.py): declared here
once, so each mixin may use it and type checkers know it. Pure."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .events import Event
from .model import Flow, FlowSet
from .session import Profile, Session

if TYPE_CHECKING:
    from .runtime import Context


class RunParts:
    flows: FlowSet
    session: Session
    ctx: Context
    events: list[Event]
    session_alive: bool

    if TYPE_CHECKING:

        @property
        def profile(self) -> Profile: ...

        @property
        def language(self) -> str: ...

        @property
        def flow(self) -> Flow: ...

        def say(self, msgid: str, **values: object) -> None: ...

        def ask(self, qid: str | None) -> None: ...

        def advance(self) -> None: ...

        def language_choices(self) -> list[str]: ...

        def resume_choice(self, proceed: bool) -> None: ...

        def answer_erase(self, text: str) -> None: ...

        def answer_star(self, text: str) -> None: ...

        def ask_current(self) -> None: ...
