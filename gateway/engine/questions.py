"""Reading one question of a flow file: its type, options, limits, only_if and indicator.

Every problem becomes a Finding at the line that holds it; the flow-level reading (and the
checks across files) is in definition.py.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from .model import (
    CHOICE,
    CONSENT,
    CONSENT_VALUES,
    CONTACT,
    CONTACT_PURPOSES,
    ENROL_FLOW,
    ENROLMENT_TYPES,
    INFO,
    LANGUAGE,
    NUMBER,
    QUESTION_TYPES,
    TEXT,
    WORKPLACE,
    Finding,
    Indicator,
    Option,
    Question,
)
from .parsing import as_number_text, parse_number
from .yamlio import item_line, key_line, node_line, value_line

QUESTION_KEYS = {
    "id",
    "ask",
    "type",
    "options",
    "min",
    "max",
    "only_if",
    "indicator",
    "purposes",
}
INDICATOR_KEYS = {"label", "positive", "measure"}
MEASURES = ("share", "mean")
# Types whose answer is not picked from the file's options.
WITHOUT_OPTIONS = {NUMBER, TEXT, INFO, LANGUAGE, WORKPLACE}


class QuestionReader:
    """Collects findings for one file while its questions are read."""

    def __init__(self, path: str, flow_id: str, text: str):
        self.path = path
        self.flow_id = flow_id
        self.text = text
        self.findings: list[Finding] = []

    def error(self, line: int, message: str) -> None:
        self.findings.append(Finding(self.path, line, message))

    def string(self, node: CommentedMap, key: str, required: bool = False) -> str | None:
        if key not in node:
            if required:
                self.error(node_line(node), f"missing '{key}'")
            return None
        value = node[key]
        if not isinstance(value, str | int | float) or isinstance(value, bool) or value == "":
            self.error(key_line(node, key), f"'{key}' must be non-empty text")
            return None
        return str(value)

    def number(self, node: CommentedMap, key: str) -> float | None:
        if key not in node:
            return None
        value = node[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.error(key_line(node, key), f"'{key}' must be a number")
            return None
        return value

    def unknown_keys(self, node: CommentedMap, allowed: set[str], what: str) -> None:
        for key in node:
            if key not in allowed:
                self.error(key_line(node, key), f"unknown key '{key}' in {what}")

    # -- one question --------------------------------------------------------------------
    def question(self, node: Any, line: int, earlier: list[Question]) -> Question | None:
        if not isinstance(node, CommentedMap):
            self.error(line, "each question must be a mapping")
            return None
        self.unknown_keys(node, QUESTION_KEYS, "question")
        qid = self.string(node, "id", required=True)
        ask = self.string(node, "ask", required=True)
        if qid is None or ask is None:
            return None
        if any(q.id == qid for q in earlier):
            self.error(key_line(node, "id"), f"duplicate question id '{qid}'")
            return None
        options = self.options(node)
        qtype = self.question_type(node, qid, options, line)
        if qtype is None:
            return None
        low, high = self.limits(node, qid, qtype)
        question = Question(
            id=qid,
            type=qtype,
            ask=ask,
            options=options,
            min=low,
            max=high,
            only_if=self.only_if(node, qid, earlier),
            purposes=self.purposes(node, qid, qtype),
            line=line,
            ask_line=value_line(node, "ask"),
        )
        return replace(question, indicator=self.indicator(node, question))

    def question_type(
        self, node: CommentedMap, qid: str, options: tuple[Option, ...], line: int
    ) -> str | None:
        if "type" not in node:
            if not options and "options" not in node:
                self.error(line, f"question '{qid}': a choice needs 'options' (or give a 'type')")
                return None
            return CHOICE
        qtype, where = node["type"], key_line(node, "type")
        if qtype not in QUESTION_TYPES:
            self.error(where, f"question '{qid}': unknown type '{qtype}'")
            return None
        if qtype in ENROLMENT_TYPES and self.flow_id != ENROL_FLOW:
            self.error(where, f"question '{qid}': type '{qtype}' belongs in enrol.yaml only")
        if qtype == CONTACT and self.flow_id == ENROL_FLOW:
            self.error(where, f"question '{qid}': a contact question belongs after enrolment")
        if qtype in (CHOICE, CONSENT, CONTACT) and "options" not in node:
            self.error(where, f"question '{qid}': a {qtype} needs 'options'")
        if qtype in WITHOUT_OPTIONS and "options" in node:
            self.error(key_line(node, "options"), f"question '{qid}': a {qtype} takes no options")
        agreeing = qtype in (CONSENT, CONTACT)
        if agreeing and options and {o.value for o in options} != set(CONSENT_VALUES):
            self.error(
                key_line(node, "options"),
                f"question '{qid}': {qtype} options must be 'agree' and 'decline'",
            )
        return str(qtype)

    def purposes(self, node: CommentedMap, qid: str, qtype: str) -> tuple[str, ...]:
        """What agreeing to a contact question allows: some of CONTACT_PURPOSES."""
        raw = node.get("purposes")
        if qtype != CONTACT:
            if "purposes" in node:
                self.error(
                    key_line(node, "purposes"),
                    f"question '{qid}': 'purposes' is for contact questions only",
                )
            return ()
        known = ", ".join(CONTACT_PURPOSES)
        if not isinstance(raw, CommentedSeq) or not raw:
            line = key_line(node, "purposes") if "purposes" in node else node_line(node)
            self.error(line, f"question '{qid}': a contact needs 'purposes', some of: {known}")
            return ()
        kept = []
        for index, purpose in enumerate(raw):
            if str(purpose) not in CONTACT_PURPOSES:
                self.error(
                    item_line(raw, index),
                    f"question '{qid}': unknown purpose '{purpose}' (one of: {known})",
                )
            elif str(purpose) not in kept:
                kept.append(str(purpose))
        return tuple(kept)

    def options(self, node: CommentedMap) -> tuple[Option, ...]:
        raw = node.get("options")
        if raw is None and "options" not in node:
            return ()
        if not isinstance(raw, CommentedMap) or not raw:
            self.error(key_line(node, "options"), "'options' must map values to texts")
            return ()
        options = []
        for value, text in raw.items():
            if not isinstance(text, str | int | float) or isinstance(text, bool) or text == "":
                self.error(key_line(raw, value), f"option '{value}' needs a text")
                continue
            options.append(Option(str(value), str(text), value_line(raw, value)))
        return tuple(options)

    def limits(self, node: CommentedMap, qid: str, qtype: str) -> tuple[float | None, float | None]:
        low, high = self.number(node, "min"), self.number(node, "max")
        for key in ("min", "max"):
            if key in node and qtype != NUMBER:
                self.error(key_line(node, key), f"question '{qid}': '{key}' is for numbers only")
        if low is not None and high is not None and low > high:
            self.error(key_line(node, "min"), f"question '{qid}': min is above max")
        return low, high

    def only_if(self, node: CommentedMap, qid: str, earlier: list[Question]) -> dict:
        raw = node.get("only_if")
        if raw is None and "only_if" not in node:
            return {}
        if not isinstance(raw, CommentedMap) or not raw:
            self.error(
                key_line(node, "only_if"),
                f"question '{qid}': 'only_if' must map question ids to values",
            )
            return {}
        conditions: dict[str, tuple[str, ...]] = {}
        for ref, wanted in raw.items():
            line = key_line(raw, ref)
            target = next((q for q in earlier if q.id == str(ref)), None)
            if target is None:
                self.error(
                    line, f"question '{qid}': only_if names unknown or later question '{ref}'"
                )
                continue
            values = wanted if isinstance(wanted, list) else [wanted]
            if not values:
                self.error(line, f"question '{qid}': only_if gives no value for '{ref}'")
                continue
            kept = [self.condition_value(target, qid, value, line) for value in values]
            conditions[target.id] = tuple(v for v in kept if v is not None)
        return conditions

    def condition_value(self, target: Question, qid: str, value: Any, line: int) -> str | None:
        """The answer ``value`` as the runtime stores it, or None (with a finding) if impossible."""
        text = str(value)
        impossible = f"question '{qid}': only_if value '{text}' can never be an answer to "
        if target.type == INFO:
            self.error(line, impossible + f"'{target.id}' (an info question takes no answer)")
            return None
        if target.options:
            if target.option(text) is None:
                self.error(line, impossible + f"'{target.id}' (not one of its options)")
                return None
            return text
        if target.type == NUMBER:
            number = None if isinstance(value, bool) else parse_number(text)
            if number is None or not target.accepts(number):
                self.error(line, impossible + f"'{target.id}' (not a number it accepts)")
                return None
            return str(as_number_text(number))
        return text

    def indicator(self, node: CommentedMap, question: Question) -> Indicator | None:
        raw = node.get("indicator")
        if raw is None and "indicator" not in node:
            return None
        line = key_line(node, "indicator")
        where = f"question '{question.id}'"
        if not isinstance(raw, CommentedMap):
            self.error(line, f"{where}: 'indicator' must be a mapping")
            return None
        self.unknown_keys(raw, INDICATOR_KEYS, "indicator")
        label = self.string(raw, "label", required=True) or question.id
        measure = raw.get("measure", "share")
        if measure not in MEASURES:
            self.error(key_line(raw, "measure"), f"{where}: unknown measure '{measure}'")
            return None
        if question.type == NUMBER and measure == "mean":
            if "positive" in raw:
                self.error(key_line(raw, "positive"), f"{where}: a mean takes no 'positive'")
            return Indicator(label=label, measure="mean")
        if question.type == CHOICE and measure == "share":
            return self.share(raw, question, line, label)
        self.error(
            key_line(raw, "measure") if "measure" in raw else line,
            f"{where}: no '{measure}' indicator for type '{question.type}' "
            "(choice: share with positive; number: mean)",
        )
        return None

    def share(self, raw: CommentedMap, question: Question, line: int, label: str) -> Indicator:
        positive = raw.get("positive")
        where = f"question '{question.id}'"
        if "positive" not in raw:
            self.error(line, f"{where}: a share indicator needs 'positive'")
            return Indicator(label=label, measure="share")
        if not isinstance(positive, CommentedSeq) or not positive:
            self.error(key_line(raw, "positive"), f"{where}: 'positive' must list option values")
            return Indicator(label=label, measure="share")
        for index, value in enumerate(positive):
            if question.option(str(value)) is None:
                self.error(
                    item_line(positive, index),
                    f"{where}: positive value '{value}' is not an option",
                )
        return Indicator(label=label, measure="share", positive=tuple(str(v) for v in positive))
