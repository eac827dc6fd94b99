"""The values a loaded flow is made of: immutable, with no knowledge of YAML or of workers.

definition.py builds them from files (and re-exports them); runtime.py and sampling.py walk them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

CHOICE, NUMBER, TEXT, INFO = "choice", "number", "text", "info"
LANGUAGE, CONSENT, WORKPLACE = "language", "consent", "workplace"
# May the service keep the worker's number to contact them later (the contact vault)?
CONTACT = "contact"
QUESTION_TYPES = {CHOICE, NUMBER, TEXT, INFO, LANGUAGE, CONSENT, WORKPLACE, CONTACT}
ENROLMENT_TYPES = {LANGUAGE, CONSENT, WORKPLACE}
ENROL_FLOW = "enrol"
CONSENT_VALUES = ("agree", "decline")  # a contact question's options too
# What a worker may agree to be contacted for (a contact question's ``purposes``).
CONTACT_PURPOSES = ("callbacks", "reminders", "prize_draws", "feedback")


@dataclass(frozen=True)
class Finding:
    """One problem in a flow file, printed as ``file:line: message``."""

    file: str
    line: int
    message: str
    warning: bool = False

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class FlowError(Exception):
    """Raised when flow files do not load; carries every finding."""

    def __init__(self, findings: list[Finding]):
        self.findings = findings
        super().__init__("\n".join(str(f) for f in findings))


@dataclass(frozen=True)
class Option:
    value: str  # what is stored
    text: str  # what the worker sees (a msgid)
    line: int = 0  # where the text is, for findings about its translations


@dataclass(frozen=True)
class Indicator:
    label: str
    measure: str  # "share" or "mean"
    positive: tuple[str, ...] = ()


@dataclass(frozen=True)
class Question:
    id: str
    type: str
    ask: str
    options: tuple[Option, ...] = ()
    min: float | None = None
    max: float | None = None
    only_if: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    indicator: Indicator | None = None
    purposes: tuple[str, ...] = ()  # a contact question: what agreeing allows
    line: int = 0
    ask_line: int = 0  # where the ask text is (below ``ask: >-``), for findings about it

    def option(self, value: str) -> Option | None:
        return next((o for o in self.options if o.value == value), None)

    def accepts(self, number: float) -> bool:
        """Whether a number question takes this number: within min and max, where given."""
        return (self.min is None or self.min <= number) and (self.max is None or number <= self.max)


@dataclass(frozen=True)
class Flow:
    id: str
    title: str
    version: str
    questions: tuple[Question, ...]
    default: bool = False
    keywords: tuple[str, ...] = ()
    sample: int | None = None
    finish: str | None = None
    path: str = ""
    default_line: int = 1  # where findings about the set (two defaults, keywords) point
    keyword_lines: tuple[int, ...] = ()
    finish_line: int = 1

    def question(self, qid: str) -> Question:
        return next(q for q in self.questions if q.id == qid)

    def msgids(self) -> list[tuple[str, int]]:
        """Every worker-facing string (a flows.po msgid) with its line, in file order:
        keywords, then each question's ask and option texts, then the finish."""
        found = list(zip(self.keywords, self.keyword_lines, strict=True))
        for question in self.questions:
            found.append((question.ask, question.ask_line or question.line))
            found.extend((o.text, o.line or question.line) for o in question.options)
        if self.finish:
            found.append((self.finish, self.finish_line))
        return found


@dataclass(frozen=True)
class FlowSet:
    """Every loaded flow, with the enrolment flow and the default flow picked out."""

    flows: Mapping[str, Flow]

    @property
    def enrol(self) -> Flow:
        return self.flows[ENROL_FLOW]

    @property
    def default(self) -> Flow:
        return next(f for f in self.flows.values() if f.default)

    def __getitem__(self, flow_id: str) -> Flow:
        return self.flows[flow_id]

    def __contains__(self, flow_id: object) -> bool:
        return flow_id in self.flows
