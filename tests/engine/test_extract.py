"""The flow extraction method and the shipped catalogs (SPEC §4, §5).

(a) ``extract_flow`` finds every worker-facing string with its line, and ``part=reports`` only
the indicator labels; the mapping files drive it and the templates are in sync with the flows.
(b) every extracted msgid is translated, not fuzzy, with its ``{placeholders}``, in all five
languages. (c) option texts are distinct within a question and keywords are distinct words.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract, extract_from_dir, extract_python
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po
from ruamel.yaml import YAML
from ruamel.yaml.constructor import DuplicateKeyError

from gateway.engine.extract import KEYWORD_COMMENT, extract_flow

ROOT = Path(__file__).resolve().parents[2]
FLOWS_DIR = ROOT / "flows"
CHECKIN = FLOWS_DIR / "checkin.yaml"
FLOW_LOCALES = ROOT / "locales"
SERVICE_LOCALES = ROOT / "gateway" / "locale"
WORDS = ROOT / "gateway" / "engine" / "words.py"
LANGUAGES = ("bn", "hi", "ta", "ms", "sw")
SERVICE_KEYWORDS = ("STOP", "HELP", "LANG")
PLACEHOLDER = re.compile(r"\{[^{}]*\}")

# The script each language is written in (Latin for Malay and Swahili).
SCRIPTS = {
    "bn": re.compile(r"[\u0980-\u09FF]"),
    "hi": re.compile(r"[\u0900-\u097F]"),
    "ta": re.compile(r"[\u0B80-\u0BFF]"),
    "ms": re.compile(r"[A-Za-z]"),
    "sw": re.compile(r"[A-Za-z]"),
}


def run(path: Path, part: str | None = None) -> list[tuple]:
    options = {} if part is None else {"part": part}
    with path.open("rb") as fileobj:
        return list(extract_flow(fileobj, ["gettext"], [], options))


def load(path: Path):
    yaml = YAML(typ="rt")
    yaml.version = (1, 2)
    return yaml.load(path.read_text(encoding="utf-8"))


def flow_files() -> list[Path]:
    return sorted(FLOWS_DIR.glob("*.yaml"))


def flow_msgids(part: str) -> set[str]:
    return {message for path in flow_files() for _, _, message, _ in run(path, part)}


def service_msgids() -> set[str]:
    with WORDS.open("rb") as fileobj:
        found = extract_python(fileobj, ["N_"], [], {})
        return {message for _, _, message, _ in found}


def read_catalog(path: Path) -> Catalog:
    with path.open("rb") as fileobj:
        return read_po(fileobj)


def catalog(domain: str, lang: str) -> Catalog:
    root = SERVICE_LOCALES if domain == "service" else FLOW_LOCALES
    return read_catalog(root / lang / "LC_MESSAGES" / f"{domain}.po")


def translate(cat: Catalog, msgid: str) -> str:
    message = cat.get(msgid)
    assert message is not None and message.string, f"{cat.locale}: {msgid!r} not translated"
    return message.string


# (a) The extraction method ---------------------------------------------------------------------


def test_extracts_every_worker_facing_string_of_checkin():
    doc = load(CHECKIN)
    expected = [str(word).upper() for word in doc.get("keywords", [])]
    for question in doc["questions"]:
        expected.append(str(question["ask"]))
        expected.extend(str(text) for text in (question.get("options") or {}).values())
    expected.append(str(doc["finish"]))
    found = run(CHECKIN)
    assert [message for _, _, message, _ in found] == expected
    # Option keys are stored values, never messages.
    assert "yes" not in {message for _, _, message, _ in found}


def test_line_numbers_point_at_the_message():
    lines = CHECKIN.read_text(encoding="utf-8").splitlines()
    found = run(CHECKIN)
    for lineno, funcname, message, comments in found:
        assert funcname in (None, "gettext")
        assert isinstance(comments, list) and comments
        assert message.lower() in lines[lineno - 1].lower(), (lineno, message)
    by_message = {message: lineno for lineno, _, message, _ in found}
    finish_line = next(i for i, line in enumerate(lines, 1) if line.startswith("finish:"))
    keywords_line = next(i for i, line in enumerate(lines, 1) if line.startswith("keywords:"))
    assert by_message[str(load(CHECKIN)["finish"])] == finish_line
    assert by_message["CHECK"] == keywords_line
    first_ask = next(i for i, line in enumerate(lines, 1) if line.strip().startswith("ask:"))
    assert by_message[str(load(CHECKIN)["questions"][0]["ask"])] == first_ask


def test_translator_comments_name_flow_and_question():
    found = run(CHECKIN)
    doc = load(CHECKIN)
    first = doc["questions"][0]
    comments = {message: c for _, _, message, c in found}
    assert comments[first["ask"]][0].startswith(f"checkin.{first['id']}")
    assert comments["CHECK"] == [f"checkin: {KEYWORD_COMMENT}"]
    assert "SMS keyword: one word, no spaces, workers type it" in KEYWORD_COMMENT


def test_reports_part_yields_exactly_the_indicator_labels():
    doc = load(CHECKIN)
    lines = CHECKIN.read_text(encoding="utf-8").splitlines()
    labels = [q["indicator"]["label"] for q in doc["questions"] if "indicator" in q]
    found = run(CHECKIN, "reports")
    assert [message for _, _, message, _ in found] == labels
    for lineno, _, message, comments in found:
        assert lines[lineno - 1].strip() == f"label: {message}"
        assert comments[0].startswith("checkin.")
    assert not {m for _, _, m, _ in found} & {m for _, _, m, _ in run(CHECKIN, "flows")}


def test_yaml_12_folded_text_and_exact_lines():
    source = (
        b"title: Test\n"  # 1
        b"keywords: [start, go]\n"  # 2
        b"questions:\n"  # 3
        b"  - id: q1\n"  # 4
        b"    ask: >-\n"  # 5
        b"      A long\n"  # 6
        b"      question?\n"  # 7
        b"    options:\n"  # 8
        b"      yes: 'Yes'\n"  # 9
        b"      no: No\n"  # 10
        b"    indicator:\n"  # 11
        b"      label: Share saying yes\n"  # 12
        b"      positive: [yes]\n"  # 13
        b"finish: Bye.\n"  # 14
    )
    fileobj = io.BytesIO(source)
    fileobj.name = "flows/test.yaml"
    found = list(extract_flow(fileobj, [], [], {}))
    assert [(n, m) for n, _, m, _ in found] == [
        (2, "START"),
        (2, "GO"),
        (5, "A long question?"),
        (9, "Yes"),
        (10, "No"),
        (14, "Bye."),
    ]
    assert found[2][3] == ["test.q1: question"]
    fileobj.seek(0)
    assert [(n, m) for n, _, m, _ in extract_flow(fileobj, [], [], {"part": "reports"})] == [
        (12, "Share saying yes")
    ]
    fileobj.seek(0)
    with pytest.raises(ValueError):
        list(extract_flow(fileobj, [], [], {"part": "titles"}))


def test_a_duplicate_key_is_refused_as_the_service_refuses_it():
    """Extraction reads flows exactly as the loader does: a key given twice is an error, not a
    template built from the one the loader would never accept."""
    fileobj = io.BytesIO(b"title: T\nquestions:\n  - id: q\n    ask: A?\n    ask: B?\n")
    fileobj.name = "flows/dup.yaml"
    with pytest.raises(DuplicateKeyError):
        list(extract_flow(fileobj, [], [], {}))


def test_babel_contract_through_extract():
    with CHECKIN.open("rb") as fileobj:
        found = list(extract(extract_flow, fileobj, options={"part": "reports"}))
    assert [message for _, message, _, _ in found] == [m for _, _, m, _ in run(CHECKIN, "reports")]


@pytest.mark.parametrize(
    ("cfg", "pot", "expected"),
    [
        ("babel-flows.cfg", FLOW_LOCALES / "messages-flows.pot", lambda: flow_msgids("flows")),
        (
            "babel-reports.cfg",
            FLOW_LOCALES / "messages-reports.pot",
            lambda: flow_msgids("reports"),
        ),
        ("babel-service.cfg", SERVICE_LOCALES / "service.pot", service_msgids),
    ],
)
def test_mapping_files_and_templates_are_in_sync(cfg, pot, expected):
    with (ROOT / cfg).open(encoding="utf-8") as fileobj:
        method_map, options_map = parse_mapping_cfg(fileobj)
    methods = {"workervoice_flows": extract_flow, "python": extract_python}
    method_map = [(pattern, methods[name]) for pattern, name in method_map]
    found = {
        message
        for _, _, message, _, _ in extract_from_dir(
            str(ROOT), method_map, options_map, keywords={"N_": None, "_": None}
        )
    }
    assert found == expected()
    template = {m.id for m in read_catalog(pot) if m.id}
    assert template == found, f"{pot.name} is stale: run the pybabel extract/update commands"


# (b) Catalog completeness ----------------------------------------------------------------------


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("domain", ["flows", "reports", "service"])
def test_every_msgid_translated(lang, domain):
    msgids = service_msgids() if domain == "service" else flow_msgids(domain)
    assert msgids
    cat = catalog(domain, lang)
    assert str(cat.locale) == lang
    assert cat.plural_forms
    for msgid in sorted(msgids):
        message = cat.get(msgid)
        assert message is not None, f"{lang}/{domain}.po lacks {msgid!r}"
        assert message.string and message.string.strip(), f"{lang}/{domain}.po: {msgid!r} empty"
        assert not message.fuzzy, f"{lang}/{domain}.po: {msgid!r} is fuzzy"
        assert sorted(PLACEHOLDER.findall(message.string)) == sorted(PLACEHOLDER.findall(msgid)), (
            f"{lang}/{domain}.po: placeholders differ for {msgid!r}"
        )
        text = PLACEHOLDER.sub("", message.string)
        assert SCRIPTS[lang].search(text), f"{lang}/{domain}.po: {msgid!r} not in the script"


@pytest.mark.parametrize("lang", LANGUAGES)
def test_service_words_format(lang):
    cat = catalog("service", lang)
    for msgid in service_msgids():
        names = {name.strip("{}"): 1 for name in PLACEHOLDER.findall(msgid)}
        assert translate(cat, msgid).format(**names)


# (c) Distinct options and keywords -------------------------------------------------------------


@pytest.mark.parametrize("lang", LANGUAGES)
def test_option_texts_distinct_within_each_question(lang):
    cat = catalog("flows", lang)
    for path in flow_files():
        for question in load(path).get("questions", []):
            options = question.get("options") or {}
            texts = [translate(cat, str(text)).casefold() for text in options.values()]
            assert len(set(texts)) == len(texts), f"{lang}: {path.stem}.{question['id']}: {texts}"


@pytest.mark.parametrize("lang", LANGUAGES)
def test_keywords_are_distinct_single_words(lang):
    service, flows = catalog("service", lang), catalog("flows", lang)
    words = {msgid: translate(service, msgid) for msgid in SERVICE_KEYWORDS}
    for path in flow_files():
        for keyword in load(path).get("keywords", []) or []:
            words[str(keyword).upper()] = translate(flows, str(keyword).upper())
    assert "CHECK" in words
    for msgid, word in words.items():
        assert word == word.strip() and word, (lang, msgid)
        assert not re.search(r"\s", word), f"{lang}: keyword {msgid} -> {word!r} is not one word"
        assert not any(ch.isdigit() for ch in word), f"{lang}: keyword {msgid} -> {word!r}"
        assert SCRIPTS[lang].search(word), f"{lang}: keyword {msgid} -> {word!r} not in the script"
    folded = [word.casefold() for word in words.values()]
    assert len(set(folded)) == len(folded), f"{lang}: keywords clash: {words}"
    for msgid, word in words.items():
        others = {other.casefold() for other in words if other != msgid}
        assert word.casefold() not in others, f"{lang}: {msgid} -> {word!r} is another keyword"
