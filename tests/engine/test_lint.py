"""Content warnings of ``flows lint`` (SPEC §4): prompts over one SMS segment, msgids a catalog
cannot show, stale translations, voice prompts nobody could hear; and the SMS arithmetic under
them (PROVIDERS.md §7)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

from gateway.audio import missing_audio
from gateway.channels.sms import render
from gateway.engine.definition import load_flows, parse_flow
from gateway.engine.events import Ask
from gateway.engine.lint import Catalog, Entry, lint
from gateway.engine.model import Flow
from gateway.engine.segments import gsm7_length, sms_length, sms_prompt
from gateway.engine.texts import language_name
from gateway.engine.voices import TWILIO_TTS_LANGUAGES
from gateway.i18n import Texts as CatalogTexts
from gateway.speech import every_utterance

ROOT = Path(__file__).resolve().parents[2]


# -- SMS arithmetic --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "length", "limit"),
    [
        ("Yes", 3, 160),
        ("a" * 160, 160, 160),
        ("a" * 161, 161, 160),
        ("a" * 159 + "€", 161, 160),  # an extension character takes two septets
        ("[1] {2} ^~|\\", 20, 160),
        ("Ça va? £5 @ 10% ¿Qué? Ñoño", 26, 160),  # all in the basic set
        ("\u201cYes\u201d", 5, 70),  # curly quotes are not GSM-7: the message goes as UCS-2
        ("ç", 1, 70),  # only the capital Ç is in the basic set
        ("আপনার", 5, 70),  # code points, not letters (PROVIDERS.md §7.4)
        ("ok 👍", 5, 70),  # outside the BMP: two UTF-16 units
    ],
)
def test_sms_length(text: str, length: int, limit: int) -> None:
    assert sms_length(text) == (length, limit)


def test_gsm7_length_is_none_outside_gsm7() -> None:
    assert gsm7_length("Line one\nline two\r") == 18
    assert gsm7_length("`") is None


def test_the_prompt_is_what_the_sms_channel_sends() -> None:
    ask = Ask(flow="f", question="q", type="choice", text="Safe?", options=("Yes", "No"))
    assert sms_prompt(ask.text, ask.options) == render((ask,)) == "Safe?\n1. Yes\n2. No"
    number = Ask(flow="f", question="n", type="number", text="How many?")
    assert sms_prompt(number.text, number.options) == render((number,))


# -- lint --------------------------------------------------------------------------------------
def flow(text: str, path: str = "flows/daily.yaml") -> Flow:
    parsed, found = parse_flow(path, textwrap.dedent(text))
    assert parsed is not None, found
    return parsed


def catalog(lang: str, **entries: Entry) -> Catalog:
    return Catalog(f"locales/{lang}/LC_MESSAGES/flows.po", entries)


DAILY = """\
default: true
keywords: [CHECK]
questions:
  - id: safe
    ask: Safe?
    options:
      yes: "Yes"
      no: "No"
finish: Thanks.
"""
SW = {
    "CHECK": Entry("ANGALIA", 10),
    "Safe?": Entry("Salama?", 14),
    "Yes": Entry("Ndiyo", 18),
    "No": Entry("Hapana", 22),
    "Thanks.": Entry("Asante.", 26),
}


def warnings(flows: list[Flow], **catalogs: Catalog) -> list[str]:
    found = lint({f.id: f for f in flows}, catalogs)
    assert all(f.warning for f in found)
    return [str(f) for f in found]


def test_short_translated_texts_draw_no_warning() -> None:
    assert warnings([flow(DAILY)], sw=catalog("sw", **SW)) == []


def test_a_long_source_prompt_is_reported_at_its_question() -> None:
    ask = "Is it safe? " * 13  # 155 characters when stripped, then the two options
    found = warnings([flow(DAILY.replace("ask: Safe?", f"ask: {ask.strip()}"))])
    assert found == [
        "flows/daily.yaml:4: the SMS prompt for daily.safe is 168 characters, over one SMS "
        "segment (160 GSM-7 characters)"
    ]


def test_a_long_translation_is_reported_at_its_ask_in_the_catalog() -> None:
    long_bn = "আপনি কি কাজের জায়গায় নিরাপদ বোধ করেন, দিনে এবং রাতে, সব সময়?"
    entries = {"Safe?": Entry(long_bn, 14), "Yes": Entry("হ্যাঁ", 18), "No": Entry("না", 22)}
    bn = catalog("bn", **{**SW, **entries})
    length = len(f"{long_bn}\n1. হ্যাঁ\n2. না")
    assert length > 70
    assert warnings([flow(DAILY)], bn=bn) == [
        f"locales/bn/LC_MESSAGES/flows.po:14: the SMS prompt for daily.safe in bn is {length} "
        "characters, over one SMS segment (70 when a character is outside GSM-7)"
    ]


def test_long_options_under_an_untranslated_ask_are_reported_at_the_question() -> None:
    bn = catalog("bn", **{**SW, "Safe?": Entry("", 14), "Yes": Entry("হ্যাঁ " * 14, 18)})
    found = warnings([flow(DAILY)], bn=bn)
    assert [line.split(": the SMS")[0] for line in found if "SMS prompt" in line] == [
        "flows/daily.yaml:4"
    ]


def test_the_language_menu_counts_every_language_by_its_own_name() -> None:
    enrol = flow(
        """\
        questions:
          - {id: language, type: language, ask: "Please choose the language you read best."}
          - id: consent
            type: consent
            ask: Agree?
            options: {agree: I agree, decline: I do not agree}
          - {id: workplace, type: workplace, ask: Code?}
        """,
        "flows/enrol.yaml",
    )
    assert warnings([enrol]) == []  # English alone: "...\n1. English"
    names = [language_name(c) for c in ("bn", "en", "hi", "ta")]
    prompt = sms_prompt("Please choose the language you read best.", names)
    assert len(prompt) > 70
    empty = {code: catalog(code) for code in ("bn", "hi", "ta")}
    found = [line for line in warnings([enrol], **empty) if "SMS prompt" in line]
    assert found[0] == (
        f"flows/enrol.yaml:2: the SMS prompt for enrol.language is {len(prompt)} characters, "
        "over one SMS segment (70 when a character is outside GSM-7)"
    )


def test_missing_empty_fuzzy_and_obsolete_msgids_once_per_language_at_first_use() -> None:
    other = flow(DAILY.replace("default: true\n", "").replace("CHECK", "SAFE"), "flows/z.yaml")
    sw = catalog(
        "sw",
        **{
            "CHECK": Entry("", 10),
            "Safe?": Entry("Salama?", 14, fuzzy=True),
            "Yes": Entry("Ndiyo", 18, obsolete=True),
            "Thanks.": Entry("Asante.", 26),
        },
    )
    po = "locales/sw/LC_MESSAGES/flows.po"
    tail = "workers choosing sw read the source text"
    assert warnings([flow(DAILY), other], sw=sw) == [
        f"flows/daily.yaml:2: 'CHECK' is not translated in {po}:10: {tail}",
        f"flows/daily.yaml:5: 'Safe?' is marked fuzzy in {po}:14: {tail}",
        f"flows/daily.yaml:7: 'Yes' is missing from {po}: {tail}",
        f"flows/daily.yaml:8: 'No' is missing from {po}: {tail}",
        f"flows/z.yaml:1: 'SAFE' is missing from {po}: {tail}",
    ]


def test_stale_translations_are_reported_in_the_catalog() -> None:
    sw = catalog(
        "sw",
        **SW,
        **{
            "Gone?": Entry("Imeenda?", 30),
            "An old question that was asked for a long time, then removed?": Entry(
                "Swali la zamani?", 34, obsolete=True
            ),
        },
    )
    po = "locales/sw/LC_MESSAGES/flows.po"
    assert warnings([flow(DAILY)], sw=sw) == [
        f"{po}:30: stale translation of 'Gone?': no flow uses it any more (extract and update "
        "the catalogs, TRANSLATING.md)",
        f"{po}:34: stale translation of 'An old question that was asked for a long time,...': "
        "no flow uses it, delete it",
    ]


# -- USSD pages (gateway/engine/screens.py) ----------------------------------------------------
TAMIL_LABELS = {"ta": ("மேலும்", "பின்செல்")}  # service.po's More / Back in Tamil


def test_a_prompt_over_three_ussd_pages_is_reported() -> None:
    ask = " ".join(["Is your workplace safe?"] * 22)  # 505 characters: one SMS warning too
    found = warnings([flow(DAILY.replace("ask: Safe?", f"ask: {ask}"))])
    assert (
        "flows/daily.yaml:4: the USSD prompt for daily.safe takes 4 screens, more than 3 USSD pages"
        in found
    )
    shorter = " ".join(["Is your workplace safe?"] * 16)  # three pages: no USSD warning
    assert not [
        f for f in warnings([flow(DAILY.replace("ask: Safe?", f"ask: {shorter}"))]) if "USSD" in f
    ]


def test_a_translation_over_three_ussd_pages_is_reported_at_its_catalog_line() -> None:
    long_bn = " ".join(["আপনি কি কাজের জায়গায় নিরাপদ?"] * 7)  # 202 units: 80 a screen
    bn = catalog("bn", **{**SW, "Safe?": Entry(long_bn, 14)})
    ussd = [line for line in warnings([flow(DAILY)], bn=bn) if "USSD" in line]
    assert ussd == [
        "locales/bn/LC_MESSAGES/flows.po:14: the USSD prompt for daily.safe in bn takes 4 "
        "screens, more than 3 USSD pages"
    ]
    # Measured with the paging labels given for the language (longer ones: more pages).
    labels = {"bn": ("আরও অনেক কিছু দেখুন", "আগের পাতায় ফিরে যান")}
    found = lint({"daily": flow(DAILY)}, {"bn": bn}, labels)
    assert [f.message for f in found if "USSD" in f.message] == [
        "the USSD prompt for daily.safe in bn takes 7 screens, more than 3 USSD pages"
    ]


def real_catalogs() -> dict[str, Catalog]:
    catalogs = {}
    for path in sorted((ROOT / "locales").glob("*/LC_MESSAGES/flows.po")):
        with path.open("rb") as handle:
            po = read_po(handle)
        entries = {m.id: Entry(m.string, m.lineno, m.fuzzy) for m in po if m.id}
        catalogs[path.parent.parent.name] = Catalog(str(path), entries)
    return catalogs


def test_the_shipped_catalogs_are_complete_and_only_some_prompts_run_long() -> None:
    flows = load_flows(ROOT / "flows").flows
    found = lint(flows, real_catalogs())
    assert found, "the enrolment's consent prompt is over 160 characters in English alone"
    assert all("the SMS prompt for" in f.message for f in found if "USSD" not in f.message)
    # Tamil's consent is the one prompt over three USSD pages (the pager's labels translated).
    ussd = [f for f in lint(flows, real_catalogs(), TAMIL_LABELS) if "USSD" in f.message]
    assert [(Path(f.file).parts[-3], f.message) for f in ussd] == [
        ("ta", "the USSD prompt for enrol.consent in ta takes 5 screens, more than 3 USSD pages")
    ]


# -- voice prompts nobody could hear (computed outside the engine: gateway/audio.py) ------------
def test_a_prompt_with_neither_a_tts_voice_nor_audio_is_reported_at_its_question() -> None:
    flows = load_flows(ROOT / "flows")
    texts = CatalogTexts.load(ROOT / "locales")
    assert "sw" in texts.languages() and "sw" not in TWILIO_TTS_LANGUAGES
    found = missing_audio(flows, texts, {})
    assert found and all(f.warning and " in sw: no audio " in f.message for f in found)
    respect = flows["checkin"].question("respect")
    assert (flows["checkin"].path, respect.line) in [(f.file, f.line) for f in found]
    assert (flows["checkin"].path, flows["checkin"].finish_line) in [
        (f.file, f.line) for f in found
    ]

    every = {code: {s.clip for s in every_utterance(flows, texts, code)} for code in ("sw",)}
    assert missing_audio(flows, texts, every) == []
    every["sw"].discard("checkin/respect.yes")
    [one] = missing_audio(flows, texts, every)
    assert (one.file, one.line) == (flows["checkin"].path, respect.line)
    assert "1 clip(s) missing (checkin/respect.yes)" in one.message
    # a language with a voice is never reported, with or without audio
    assert missing_audio(flows, texts, {}, voiced=set(texts.languages())) == []
