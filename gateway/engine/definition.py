"""Flow definitions: load and validate flows/*.yaml into immutable values.

Loading is apart from walking (runtime.py). Files are read as YAML 1.2 with ruamel.yaml, so
``yes``/``no``/``on``/``off`` are strings, and every problem is reported as
``file:line: message`` at the line that holds it. The value types live in model.py, the reading
of one question in questions.py, the YAML itself (loader, line numbers) in yamlio.py.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from . import words
from .model import ENROL_FLOW, ENROLMENT_TYPES, Finding, Flow, FlowError, FlowSet, Question
from .questions import QuestionReader
from .yamlio import item_line, key_line, load_yaml, node_line, value_line

FLOW_KEYS = {"title", "version", "default", "keywords", "sample", "questions", "finish"}
RESERVED_KEYWORDS = words.OPT_OUT_WORDS | {
    words.KEYWORD_HELP.upper(),
    words.KEYWORD_LANG.upper(),
    words.KEYWORD_DELETE.upper(),
}
# Every answer is stored with its flow id, question id and flow version, in the columns
# answers.flow_id String(64), answers.question_id String(64) and answers.flow_version String(32)
# (store/models.py Answer). Longer values would load, then fail every answer on PostgreSQL.
MAX_FLOW_ID = 64
MAX_QUESTION_ID = 64
MAX_VERSION = 32


class _Reader(QuestionReader):
    """Turns one parsed YAML document into a Flow, collecting findings instead of stopping."""

    def flow(self, doc: Any) -> Flow | None:
        if len(self.flow_id) > MAX_FLOW_ID:
            self.error(
                1,
                f"flow id '{self.flow_id}' (the file name) is longer than {MAX_FLOW_ID} characters",
            )
        if not isinstance(doc, CommentedMap):
            self.error(node_line(doc), "a flow file must be a mapping with 'questions'")
            return None
        self.unknown_keys(doc, FLOW_KEYS, "flow")
        questions_node = doc.get("questions")
        if not isinstance(questions_node, CommentedSeq) or not questions_node:
            line = key_line(doc, "questions") if "questions" in doc else 1
            self.error(line, "'questions' must be a non-empty list")
            return None
        questions: list[Question] = []
        for index, item in enumerate(questions_node):
            question = self.question(item, item_line(questions_node, index), questions)
            if question is not None:
                questions.append(question)
        default = doc.get("default", False)
        if not isinstance(default, bool):
            self.error(key_line(doc, "default"), "'default' must be true or false")
            default = False
        keywords, keyword_lines = self.keywords(doc)
        flow = Flow(
            id=self.flow_id,
            title=self.string(doc, "title") or self.flow_id,
            version=self.version(doc),
            questions=tuple(questions),
            default=default,
            keywords=keywords,
            sample=self.sample(doc),
            finish=self.string(doc, "finish"),
            path=self.path,
            default_line=key_line(doc, "default") if "default" in doc else 1,
            keyword_lines=keyword_lines,
            finish_line=value_line(doc, "finish") if "finish" in doc else 1,
        )
        if self.flow_id == ENROL_FLOW:
            self.check_enrolment(doc, flow)
        return flow

    def question(self, node: Any, line: int, earlier: list[Question]) -> Question | None:
        question = super().question(node, line, earlier)
        if question is not None and len(question.id) > MAX_QUESTION_ID:
            self.error(
                key_line(node, "id"),
                f"question id '{question.id}' is longer than {MAX_QUESTION_ID} characters",
            )
        return question

    def version(self, doc: CommentedMap) -> str:
        version = doc.get("version")
        if version is None:
            return content_version(self.text)
        text = str(version)
        if len(text) > MAX_VERSION:
            self.error(
                key_line(doc, "version"), f"'version' is longer than {MAX_VERSION} characters"
            )
        return text

    def sample(self, doc: CommentedMap) -> int | None:
        sample = doc.get("sample")
        if sample is None:
            return None
        if isinstance(sample, bool) or not isinstance(sample, int) or sample < 1:
            self.error(key_line(doc, "sample"), "'sample' must be a whole number of at least 1")
            return None
        return sample

    def keywords(self, doc: CommentedMap) -> tuple[tuple[str, ...], tuple[int, ...]]:
        node = doc.get("keywords", [])
        if not isinstance(node, list) or not all(isinstance(k, str) and k.strip() for k in node):
            self.error(key_line(doc, "keywords"), "'keywords' must be a list of words")
            return (), ()
        found: list[str] = []
        lines: list[int] = []
        for index, raw in enumerate(node):
            word, line = raw.strip().upper(), item_line(node, index)
            if word in RESERVED_KEYWORDS:
                self.error(line, f"keyword '{word}' is reserved for the service")
                continue
            found.append(word)
            lines.append(line)
        return tuple(found), tuple(lines)

    def check_enrolment(self, doc: CommentedMap, flow: Flow) -> None:
        """enrol.yaml asks each of the three special questions exactly once (the runtime picks
        "the" language question for LANG) and is never started any other way."""
        if flow.default:
            self.error(flow.default_line, "the enrolment flow cannot be the default flow")
        if flow.keywords:
            self.error(flow.keyword_lines[0], "the enrolment flow cannot have keywords")
        for qtype in sorted(ENROLMENT_TYPES):
            asked = [q for q in flow.questions if q.type == qtype]
            if not asked:
                self.error(key_line(doc, "questions"), f"enrolment needs a '{qtype}' question")
            for extra in asked[1:]:
                self.error(
                    extra.line,
                    f"question '{extra.id}': enrolment asks one '{qtype}' question "
                    f"('{asked[0].id}' already is one)",
                )


def content_version(text: str) -> str:
    """A flow's version when the file gives none: a hash of its text."""
    return "sha-" + hashlib.sha256(text.encode()).hexdigest()[:12]


def _syntax_finding(path: str, exc: YAMLError) -> Finding:
    """A YAML error at the line to fix: where the parser stopped, or, when it ran off the end
    of the file (an unclosed quote or bracket), where the unclosed thing began."""
    problem_mark = getattr(exc, "problem_mark", None)
    context_mark = getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context = getattr(exc, "context", None)
    at_end = "end of stream" in problem or "<stream end>" in problem
    if context and context_mark is not None and (at_end or problem_mark is None):
        return Finding(path, context_mark.line + 1, f"YAML syntax: {problem} ({context} here)")
    mark = problem_mark or context_mark
    line = mark.line + 1 if mark is not None else 1
    if context and context_mark is not None and context_mark.line + 1 != line:
        problem = f"{problem} ({context} from line {context_mark.line + 1})"
    return Finding(path, line, f"YAML syntax: {problem}")


def parse_flow(path: str, text: str) -> tuple[Flow | None, list[Finding]]:
    """Parse one flow file's text; return the flow (if it has no errors) and every finding."""
    reader = _Reader(path, Path(path).stem, text)
    try:
        doc = load_yaml(text)
    except YAMLError as exc:
        return None, [_syntax_finding(path, exc)]
    flow = reader.flow(doc)
    findings = sorted(reader.findings, key=lambda f: f.line)
    errors = [f for f in findings if not f.warning]
    return (flow if not errors else None), findings


def check_set(flows: Iterable[Flow]) -> list[Finding]:
    """Findings that concern several files: more than one default, clashing keywords."""
    flows = sorted(flows, key=lambda f: f.path)
    findings: list[Finding] = []
    defaults = [f for f in flows if f.default]
    for extra in defaults[1:]:
        message = f"more than one default flow ('{defaults[0].id}' and '{extra.id}')"
        findings.append(Finding(extra.path, extra.default_line, message))
    seen: dict[str, str] = {}
    for flow in flows:
        for word, line in zip(flow.keywords, flow.keyword_lines, strict=True):
            if seen.get(word, flow.id) != flow.id:
                message = f"keyword '{word}' clashes with flow '{seen[word]}'"
                findings.append(Finding(flow.path, line, message))
            seen.setdefault(word, flow.id)
    return findings


def read_flows(directory: str | os.PathLike[str]) -> tuple[dict[str, Flow], list[Finding]]:
    """Read every ``*.yaml`` in a directory: the flows that loaded, and every finding, with the
    checks across files and the ones the service makes before it accepts a set (an enrolment
    and a default flow). A file that cannot be read is a finding too, never an exception."""
    root = Path(directory)
    findings: list[Finding] = []
    flows: dict[str, Flow] = {}
    for path in sorted(root.glob("*.yaml")):
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            findings.append(Finding(str(path), 1, f"not UTF-8 text (byte {exc.start})"))
            continue
        except OSError as exc:
            findings.append(Finding(str(path), 1, f"cannot read: {exc.strerror or exc}"))
            continue
        flow, found = parse_flow(str(path), text)
        findings.extend(found)
        if flow is not None:
            flows[flow.id] = flow
    findings.extend(check_set(flows.values()))
    if ENROL_FLOW not in flows and not any(Path(f.file).stem == ENROL_FLOW for f in findings):
        findings.append(Finding(str(root / "enrol.yaml"), 1, "the enrolment flow is missing"))
    if not any(f.default for f in flows.values()) and not findings:
        findings.append(Finding(str(root), 1, "no flow is marked 'default: true'"))
    return flows, findings


def load_flows(directory: str | os.PathLike[str]) -> FlowSet:
    """Load every ``*.yaml`` in a directory; raise FlowError listing every problem."""
    flows, findings = read_flows(directory)
    errors = [f for f in findings if not f.warning]
    if errors:
        raise FlowError(errors)
    return FlowSet(flows=flows)
