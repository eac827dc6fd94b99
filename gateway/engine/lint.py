"""Content warnings for ``workervoice flows lint`` (SPEC §4): what loads but may serve workers
badly. Pure: the flows come loaded, the catalogs as plain values the caller read from .po files.

- a prompt longer than one SMS segment, in the source text or any catalog's translation;
- a prompt longer than three USSD pages (gateway/engine/screens.py, as the USSD channel pages
  it), in the same languages;
- a flow's msgid that a language's flows.po lacks, leaves empty or marks fuzzy (the worker then
  reads the source text);
- a stale translation: a msgid in a flows.po that no flow uses any more.

Each is a warning Finding at the line to fix.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from . import words
from .model import LANGUAGE, Finding, Flow, Question
from .screens import MANY_PAGES, page_count, prompt_lines
from .segments import SMS_GSM7, sms_length, sms_prompt
from .texts import SOURCE_LANGUAGE, language_name

SHOWN = 50  # characters of a msgid quoted in a warning


@dataclass(frozen=True)
class Entry:
    """One message of a .po file."""

    string: str  # the translation, "" when untranslated
    line: int  # of its msgid in the .po file
    fuzzy: bool = False
    obsolete: bool = False  # a ``#~`` entry, kept by ``pybabel update`` after its msgid went

    @property
    def usable(self) -> bool:
        """Whether the service shows it (gateway/i18n.py skips these, as gettext does)."""
        return bool(self.string) and not self.fuzzy and not self.obsolete


@dataclass(frozen=True)
class Catalog:
    """A language's flows.po: its path and its messages by msgid (the header left out)."""

    path: str
    entries: Mapping[str, Entry]

    def translate(self, msgid: str) -> str:
        entry = self.entries.get(msgid)
        return entry.string if entry is not None and entry.usable else msgid


def lint(
    flows: Mapping[str, Flow],
    catalogs: Mapping[str, Catalog],
    page_labels: Mapping[str, tuple[str, str]] | None = None,
) -> list[Finding]:
    """Every content warning for a set of flows that loaded, in file and line order.

    ``page_labels`` are the USSD paging labels (More, Back) by language, from the service's
    catalog; a language without them is measured with the English ones."""
    ordered = sorted(flows.values(), key=lambda f: f.path)
    names = [language_name(code) for code in sorted(set(catalogs) | {SOURCE_LANGUAGE})]
    findings = [f for flow in ordered for f in long_prompts(flow, catalogs, names)]
    labels = page_labels or {}
    findings += [f for flow in ordered for f in many_pages(flow, catalogs, names, labels)]
    findings += untranslated(ordered, catalogs)
    findings += stale(ordered, catalogs)
    return sorted(findings, key=lambda f: (f.file, f.line))


def long_prompts(
    flow: Flow, catalogs: Mapping[str, Catalog], language_names: list[str]
) -> Iterator[Finding]:
    """Questions whose SMS prompt (ask and numbered options) takes more than one segment: the
    source text at the question, a translation at its ask in the catalog (or at the question
    when the ask is not translated there)."""
    for question in flow.questions:
        where = f"{flow.id}.{question.id}"
        source = _prompt(question, None, language_names)
        too_long = _over_one_segment(source)
        if too_long:
            yield _warning(flow.path, question.line, f"the SMS prompt for {where} {too_long}")
        for lang, catalog in sorted(catalogs.items()):
            too_long = _over_one_segment(_prompt(question, catalog, language_names))
            if not too_long:
                continue
            file, line = _located(flow, question, catalog)
            yield _warning(file, line, f"the SMS prompt for {where} in {lang} {too_long}")


def many_pages(
    flow: Flow,
    catalogs: Mapping[str, Catalog],
    language_names: list[str],
    page_labels: Mapping[str, tuple[str, str]],
) -> Iterator[Finding]:
    """Questions whose USSD prompt takes more than three pages: in the source language at the
    question, in a catalog's language where the SMS warning would be."""
    english = (words.PAGE_NEXT, words.PAGE_BACK)
    languages: list[tuple[str, Catalog | None]] = [(SOURCE_LANGUAGE, None)]
    languages += sorted(catalogs.items())
    for question in flow.questions:
        for lang, catalog in languages:
            text, options = _ask_and_options(question, catalog, language_names)
            more, back = page_labels.get(lang, english)
            pages = page_count(prompt_lines(text, options), more, back)
            if pages <= MANY_PAGES:
                continue
            if catalog is None:
                file, line, in_lang = flow.path, question.line, ""
            else:
                (file, line), in_lang = _located(flow, question, catalog), f" in {lang}"
            message = (
                f"the USSD prompt for {flow.id}.{question.id}{in_lang} takes {pages} screens, "
                f"more than {MANY_PAGES} USSD pages"
            )
            yield _warning(file, line, message)


def _located(flow: Flow, question: Question, catalog: Catalog) -> tuple[str, int]:
    """Where a language's prompt is fixed: its ask in the catalog, or the question when the
    ask is not translated there."""
    entry = catalog.entries.get(question.ask)
    if entry is not None and entry.usable:
        return catalog.path, entry.line
    return flow.path, question.line


def _prompt(question: Question, catalog: Catalog | None, language_names: list[str]) -> str:
    """The prompt as a worker reads it in one language (None: the source language)."""
    return sms_prompt(*_ask_and_options(question, catalog, language_names))


def _ask_and_options(
    question: Question, catalog: Catalog | None, language_names: list[str]
) -> tuple[str, list[str]]:
    """A question's text and option texts in one language (None: the source language)."""

    def text(msgid: str) -> str:
        return catalog.translate(msgid) if catalog is not None else msgid

    if question.type == LANGUAGE:  # every language, each by its own name, in any order
        return text(question.ask), language_names
    return text(question.ask), [text(o.text) for o in question.options]


def _over_one_segment(prompt: str) -> str | None:
    """What is wrong with the prompt's length, or None when it fits one SMS segment."""
    length, limit = sms_length(prompt)
    if length <= limit:
        return None
    kind = "GSM-7 characters" if limit == SMS_GSM7 else "when a character is outside GSM-7"
    return f"is {length} characters, over one SMS segment ({limit} {kind})"


def untranslated(flows: list[Flow], catalogs: Mapping[str, Catalog]) -> Iterator[Finding]:
    """Each msgid a language cannot show, once per language, at the first place it is used."""
    first: dict[str, tuple[str, int]] = {}
    for flow in flows:
        for msgid, line in flow.msgids():
            first.setdefault(msgid, (flow.path, line))
    for lang, catalog in sorted(catalogs.items()):
        for msgid, (file, line) in first.items():
            entry = catalog.entries.get(msgid)
            if entry is not None and entry.usable:
                continue
            if entry is None or entry.obsolete:
                problem = f"is missing from {catalog.path}"
            elif entry.fuzzy:
                problem = f"is marked fuzzy in {catalog.path}:{entry.line}"
            else:
                problem = f"is not translated in {catalog.path}:{entry.line}"
            message = f"{_quote(msgid)} {problem}: workers choosing {lang} read the source text"
            yield _warning(file, line, message)


def stale(flows: list[Flow], catalogs: Mapping[str, Catalog]) -> Iterator[Finding]:
    """Catalog messages that no flow uses any more, at their line in the catalog."""
    used = {msgid for flow in flows for msgid, _ in flow.msgids()}
    for _lang, catalog in sorted(catalogs.items()):
        for msgid, entry in catalog.entries.items():
            if msgid in used:
                continue
            if entry.obsolete:
                message = f"stale translation of {_quote(msgid)}: no flow uses it, delete it"
            else:
                message = (
                    f"stale translation of {_quote(msgid)}: no flow uses it any more "
                    "(extract and update the catalogs, TRANSLATING.md)"
                )
            yield _warning(catalog.path, entry.line, message)


def _quote(msgid: str) -> str:
    text = " ".join(msgid.split())
    return repr(text if len(text) <= SHOWN else text[: SHOWN - 3] + "...")


def _warning(file: str, line: int, message: str) -> Finding:
    return Finding(file, line, message, warning=True)
