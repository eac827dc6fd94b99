"""Flow definitions: load and validate flows/*.yaml into immutable values.

Loading is apart from walking (runtime.py). Files are read as YAML 1.2 with ruamel.yaml, so
``yes``/``no`` are strings, and every problem is reported as ``file:line: message``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

CHOICE, NUMBER, TEXT, INFO = "choice", "number", "text", "info"
LANGUAGE, CONSENT, WORKPLACE = "language", "consent", "workplace"
QUESTION_TYPES = {CHOICE, NUMBER, TEXT, INFO, LANGUAGE, CONSENT, WORKPLACE}
ENROLMENT_TYPES = {LANGUAGE, CONSENT, WORKPLACE}
ENROL_FLOW = "enrol"
CONSENT_VALUES = ("agree", "decline")

FLOW_KEYS = {"title", "version", "default", "keywords", "sample", "questions", "finish"}
QUESTION_KEYS = {"id", "ask", "type", "options", "min", "max", "only_if", "indicator"}
INDICATOR_KEYS = {"label", "positive", "measure"}


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
    value: str
    text: str


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
    line: int = 0

    def option(self, value: str) -> Option | None:
        return next((o for o in self.options if o.value == value), None)


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

    def question(self, qid: str) -> Question:
        return next(q for q in self.questions if q.id == qid)

    def index(self, qid: str) -> int:
        return next(i for i, q in enumerate(self.questions) if q.id == qid)


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


class _Reader:
    """Turns one parsed YAML document into a Flow, collecting findings instead of stopping."""

    def __init__(self, path: str, text: str):
        self.path = path
        self.text = text
        self.findings: list[Finding] = []

    def error(self, line: int, message: str) -> None:
        self.findings.append(Finding(self.path, line, message))

    @staticmethod
    def key_line(node: CommentedMap, key: str) -> int:
        try:
            return node.lc.key(key)[0] + 1
        except (KeyError, AttributeError, TypeError):
            return node.lc.line + 1 if hasattr(node, "lc") else 1

    def string(self, node: CommentedMap, key: str, required: bool = False) -> str | None:
        if key not in node:
            if required:
                self.error(node.lc.line + 1, f"missing '{key}'")
            return None
        value = node[key]
        if not isinstance(value, str | int | float) or isinstance(value, bool) or value == "":
            self.error(self.key_line(node, key), f"'{key}' must be non-empty text")
            return None
        return str(value)

    def number(self, node: CommentedMap, key: str) -> float | None:
        if key not in node:
            return None
        value = node[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.error(self.key_line(node, key), f"'{key}' must be a number")
            return None
        return value

    def unknown_keys(self, node: CommentedMap, allowed: set[str], what: str) -> None:
        for key in node:
            if key not in allowed:
                self.error(self.key_line(node, key), f"unknown key '{key}' in {what}")

    def flow(self, flow_id: str, doc: Any) -> Flow | None:
        if not isinstance(doc, CommentedMap):
            self.error(1, "a flow file must be a mapping with 'questions'")
            return None
        self.unknown_keys(doc, FLOW_KEYS, "flow")
        questions_node = doc.get("questions")
        if not isinstance(questions_node, CommentedSeq) or not questions_node:
            line = self.key_line(doc, "questions") if "questions" in doc else 1
            self.error(line, "'questions' must be a non-empty list")
            return None
        questions: list[Question] = []
        for item in questions_node:
            question = self.question(item, questions)
            if question is not None:
                questions.append(question)
        default = doc.get("default", False)
        if not isinstance(default, bool):
            self.error(self.key_line(doc, "default"), "'default' must be true or false")
            default = False
        keywords = self.keywords(doc)
        sample = doc.get("sample")
        if sample is not None and (isinstance(sample, bool) or not isinstance(sample, int) or sample < 1):
            self.error(self.key_line(doc, "sample"), "'sample' must be a whole number of at least 1")
            sample = None
        version = doc.get("version")
        version_text = str(version) if version is not None else _content_version(self.text)
        return Flow(
            id=flow_id,
            title=self.string(doc, "title") or flow_id,
            version=version_text,
            questions=tuple(questions),
            default=default,
            keywords=keywords,
            sample=sample,
            finish=self.string(doc, "finish"),
            path=self.path,
        )

    def keywords(self, doc: CommentedMap) -> tuple[str, ...]:
        node = doc.get("keywords", [])
        if not isinstance(node, list) or not all(isinstance(k, str) and k.strip() for k in node):
            self.error(self.key_line(doc, "keywords"), "'keywords' must be a list of words")
            return ()
        return tuple(k.strip().upper() for k in node)

    def question(self, node: Any, earlier: list[Question]) -> Question | None:
        if not isinstance(node, CommentedMap):
            line = getattr(getattr(node, "lc", None), "line", 0) + 1
            self.error(line, "each question must be a mapping")
            return None
        line = node.lc.line + 1
        self.unknown_keys(node, QUESTION_KEYS, "question")
        qid = self.string(node, "id", required=True)
        ask = self.string(node, "ask", required=True)
        if qid is None or ask is None:
            return None
        if any(q.id == qid for q in earlier):
            self.error(self.key_line(node, "id"), f"duplicate question id '{qid}'")
            return None
        options = self.options(node)
        qtype = node.get("type", CHOICE if options else None)
        if qtype not in QUESTION_TYPES:
            where = self.key_line(node, "type") if "type" in node else line
            self.error(where, f"question '{qid}': unknown type '{qtype}'" if qtype else
                       f"question '{qid}': a choice needs 'options' (or give a 'type')")
            return None
        if qtype == CHOICE and not options:
            self.error(line, f"question '{qid}': a choice needs 'options'")
        if qtype == CONSENT and sorted(o.value for o in options) != sorted(CONSENT_VALUES):
            self.error(line, f"question '{qid}': consent options must be 'agree' and 'decline'")
        low, high = self.number(node, "min"), self.number(node, "max")
        if low is not None and high is not None and low > high:
            self.error(self.key_line(node, "min"), f"question '{qid}': min is above max")
        question = Question(
            id=qid,
            type=qtype,
            ask=ask,
            options=options,
            min=low,
            max=high,
            only_if=self.only_if(node, qid, earlier),
            line=line,
        )
        return replace(question, indicator=self.indicator(node, question))

    def options(self, node: CommentedMap) -> tuple[Option, ...]:
        raw = node.get("options")
        if raw is None:
            return ()
        if not isinstance(raw, CommentedMap) or not raw:
            self.error(self.key_line(node, "options"), "'options' must map values to texts")
            return ()
        options = []
        for value, text in raw.items():
            if not isinstance(text, str | int | float) or text == "":
                self.error(self.key_line(raw, value), f"option '{value}' needs a text")
                continue
            options.append(Option(str(value), str(text)))
        return tuple(options)

    def only_if(self, node: CommentedMap, qid: str, earlier: list[Question]) -> dict:
        raw = node.get("only_if")
        if raw is None:
            return {}
        line = self.key_line(node, "only_if")
        if not isinstance(raw, CommentedMap) or not raw:
            self.error(line, f"question '{qid}': 'only_if' must map question ids to values")
            return {}
        conditions: dict[str, tuple[str, ...]] = {}
        for ref, wanted in raw.items():
            values = tuple(str(v) for v in (wanted if isinstance(wanted, list) else [wanted]))
            target = next((q for q in earlier if q.id == ref), None)
            if target is None:
                self.error(line, f"question '{qid}': only_if names unknown or later question '{ref}'")
                continue
            if target.options:
                for value in values:
                    if target.option(value) is None:
                        self.error(line, f"question '{qid}': only_if value '{value}' is not an "
                                         f"option of '{ref}'")
            conditions[str(ref)] = values
        return conditions

    def indicator(self, node: CommentedMap, question: Question) -> Indicator | None:
        raw = node.get("indicator")
        if raw is None:
            return None
        line = self.key_line(node, "indicator")
        if not isinstance(raw, CommentedMap):
            self.error(line, f"question '{question.id}': 'indicator' must be a mapping")
            return None
        self.unknown_keys(raw, INDICATOR_KEYS, "indicator")
        label = self.string(raw, "label", required=True) or question.id
        measure = raw.get("measure", "share")
        if question.type == NUMBER and measure == "mean":
            return Indicator(label=label, measure="mean")
        if question.type == CHOICE and measure == "share":
            positive = raw.get("positive")
            if not isinstance(positive, list) or not positive:
                self.error(line, f"question '{question.id}': a share indicator needs 'positive'")
                return None
            values = tuple(str(v) for v in positive)
            for value in values:
                if question.option(value) is None:
                    self.error(line, f"question '{question.id}': positive value '{value}' is not "
                                     "an option")
            return Indicator(label=label, measure="share", positive=values)
        self.error(line, f"question '{question.id}': a {question.type} question cannot have a "
                         f"'{measure}' indicator (choice: share with positive; number: mean)")
        return None


def _content_version(text: str) -> str:
    return "sha-" + hashlib.sha256(text.encode()).hexdigest()[:12]


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.version = (1, 2)
    yaml.allow_duplicate_keys = False
    return yaml


def parse_flow(path: str, text: str) -> tuple[Flow | None, list[Finding]]:
    """Parse one flow file's text; return the flow (if usable) and every finding."""
    flow_id = Path(path).stem
    reader = _Reader(path, text)
    try:
        doc = _yaml().load(text)
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        return None, [Finding(path, line, f"YAML syntax: {problem}")]
    flow = reader.flow(flow_id, doc)
    if flow is not None and flow_id != ENROL_FLOW:
        for question in flow.questions:
            if question.type in ENROLMENT_TYPES:
                reader.error(question.line, f"question '{question.id}': type '{question.type}' "
                                            "belongs in enrol.yaml only")
    return (flow if not reader.findings else None), reader.findings


def check_set(flows: Iterable[Flow]) -> list[Finding]:
    """Findings that concern several files: defaults, keywords, the enrolment flow."""
    flows = list(flows)
    findings: list[Finding] = []
    defaults = [f for f in flows if f.default]
    for extra in defaults[1:]:
        findings.append(Finding(extra.path, 1, f"more than one default flow ('{defaults[0].id}' "
                                               f"and '{extra.id}')"))
    seen: dict[str, str] = {}
    for flow in flows:
        for word in flow.keywords:
            if word in seen and seen[word] != flow.id:
                findings.append(Finding(flow.path, 1, f"keyword '{word}' clashes with flow "
                                                      f"'{seen[word]}'"))
            seen.setdefault(word, flow.id)
    return findings


def load_flows(directory: str | os.PathLike) -> FlowSet:
    """Load every ``*.yaml`` in a directory; raise FlowError listing every problem."""
    root = Path(directory)
    files = sorted(root.glob("*.yaml"))
    findings: list[Finding] = []
    flows: dict[str, Flow] = {}
    for path in files:
        flow, found = parse_flow(str(path), path.read_text(encoding="utf-8"))
        findings.extend(found)
        if flow is not None:
            flows[flow.id] = flow
    findings.extend(check_set(flows.values()))
    if ENROL_FLOW not in flows and not any(Path(f.file).stem == ENROL_FLOW for f in findings):
        findings.append(Finding(str(root / "enrol.yaml"), 1, "the enrolment flow is missing"))
    if not any(f.default for f in flows.values()) and not findings:
        findings.append(Finding(str(root), 1, "no flow is marked 'default: true'"))
    errors = [f for f in findings if not f.warning]
    if errors:
        raise FlowError(errors)
    return FlowSet(flows=flows)
