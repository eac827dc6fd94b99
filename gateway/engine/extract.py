"""Babel extraction method for flow YAML files (``flows/*.yaml``, SPEC §4 and §5).

Registered as the ``workervoice_flows`` extractor (``babel.extractors`` entry point), so a
mapping file can say::

    [workervoice_flows: flows/**.yaml]
    part = flows

The ``part`` option picks what to extract:

``flows`` (default)
    every worker-facing string: each question's ``ask``, each option text (the values of the
    ``options`` mapping, never the keys, which are the stored values), the flow's ``finish`` and
    each of its ``keywords``. These go to ``flows.po``.
``reports``
    only each question's ``indicator.label``; labels face brands and go to ``reports.po``.

Files are read as the service reads them (yamlio.py: YAML 1.2, so ``yes``/``no`` stay strings;
a duplicate key is an error) and every message carries the line it is on. Each message has a
translator comment naming the flow and the question (``checkin.long_hours``). The module is
pure: no Flask, Redis or SQL, so ``pybabel`` can load it anywhere.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterator, Mapping
from typing import IO, Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from .yamlio import item_line, load_yaml, value_line

PARTS = ("flows", "reports")
KEYWORD_COMMENT = "SMS keyword: one word, no spaces, workers type it"

Message = tuple[int, str | None, str, list[str]]


def _text(value: Any) -> str | None:
    """The message a YAML value gives, or None when it is not (non-empty) text."""
    if isinstance(value, str) and value.strip():
        return str(value)
    return None


def _flow_id(fileobj: IO[bytes]) -> str:
    name = getattr(fileobj, "name", None)
    if isinstance(name, str | bytes | os.PathLike):
        base = os.path.basename(os.fsdecode(name))
        stem, _ext = os.path.splitext(base)
        if stem:
            return stem
    return "flow"


def _flow_messages(flow: str, doc: CommentedMap) -> Iterator[Message]:
    keywords = doc.get("keywords")
    if isinstance(keywords, CommentedSeq):
        for index, word in enumerate(keywords):
            text = _text(word)
            if text is not None:
                # Keywords are matched in upper case (definition.py); the msgid is that form.
                yield (
                    item_line(keywords, index),
                    None,
                    text.strip().upper(),
                    [f"{flow}: {KEYWORD_COMMENT}"],
                )
    for question in _questions(doc):
        qid = question.get("id")
        where = f"{flow}.{qid}"
        ask = _text(question.get("ask"))
        if ask is not None:
            yield value_line(question, "ask"), None, ask, [f"{where}: question"]
        options = question.get("options")
        if isinstance(options, CommentedMap):
            for value, option in options.items():
                text = _text(option)
                if text is not None:
                    yield (
                        value_line(options, value),
                        None,
                        text,
                        [f"{where}: answer option '{value}' (keep options distinct)"],
                    )
    finish = _text(doc.get("finish"))
    if finish is not None:
        yield (
            value_line(doc, "finish"),
            None,
            finish,
            [f"{flow}: finish (after the last question)"],
        )


def _report_messages(flow: str, doc: CommentedMap) -> Iterator[Message]:
    for question in _questions(doc):
        indicator = question.get("indicator")
        if not isinstance(indicator, CommentedMap):
            continue
        label = _text(indicator.get("label"))
        if label is not None:
            comment = f"{flow}.{question.get('id')}: indicator label (brand reports)"
            yield value_line(indicator, "label"), None, label, [comment]


def _questions(doc: CommentedMap) -> Iterator[CommentedMap]:
    questions = doc.get("questions")
    if isinstance(questions, CommentedSeq):
        for question in questions:
            if isinstance(question, CommentedMap):
                yield question


def extract_flow(
    fileobj: IO[bytes],
    keywords: Collection[str],
    comment_tags: Collection[str],
    options: Mapping[str, Any],
) -> Iterator[Message]:
    """Babel extraction method: yield ``(lineno, funcname, message, comments)`` per message.

    ``keywords`` and ``comment_tags`` are part of Babel's contract and unused here: flow files
    have no function calls and the translator comments are generated.
    """
    options = options or {}
    part = str(options.get("part", "flows")).strip().lower() or "flows"
    if part not in PARTS:
        raise ValueError(f"workervoice_flows: unknown part {part!r} (use 'flows' or 'reports')")
    raw = fileobj.read()
    data = raw.decode(str(options.get("encoding", "utf-8"))) if isinstance(raw, bytes) else raw
    doc = load_yaml(data)
    if not isinstance(doc, CommentedMap):
        return
    flow = _flow_id(fileobj)
    if part == "flows":
        yield from _flow_messages(flow, doc)
    else:
        yield from _report_messages(flow, doc)
