"""USSD screens and cumulative texts, pure (gateway/engine/screens.py, gateway/channels/ussd.py).

The pager's promises (SPEC §4) are checked three ways: examples at the limits; every prompt the
shipped flows can put on a screen, in every shipped language, with the labels translated
(exhaustively: every order of the language menu too); and a few thousand random contents from a
fixed seed (a property test without a dependency).
"""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest

from gateway.channels import ussd
from gateway.engine import words
from gateway.engine.definition import load_flows
from gateway.engine.events import Ask, FlowFinished, Say, Step
from gateway.engine.model import LANGUAGE
from gateway.engine.screens import (
    USSD_GSM7,
    USSD_UCS2,
    Line,
    fits,
    layout,
    paginate,
    prompt_lines,
    prose,
    screen_length,
)
from gateway.engine.session import Session
from gateway.engine.texts import language_name
from gateway.i18n import Texts

ROOT = Path(__file__).resolve().parents[2]
TEXTS = Texts.load(ROOT / "locales")
FLOWS = load_flows(ROOT / "flows")
SID = "ATUid_5d3b4c2bc589f4811820a7184eed4df5"


def check_pages(lines: list[Line], pages: list[str], more: str, back: str) -> None:
    """Every promise of the pager for one content: each screen fits; a single screen is the
    content as it is; pages carry ``98``/``00`` where they should; the content reads the same,
    character for character, across the pages; an option line that fits a page is never cut."""
    assert pages and all(fits(page) for page in pages), [screen_length(p) for p in pages]
    texts = [line.text for line in lines]
    if len(pages) == 1:
        assert pages[0] == "\n".join(texts)
        return
    shown: list[str] = []
    for index, page in enumerate(pages):
        footer = ([f"98. {more}"] if index < len(pages) - 1 else []) + (
            [f"00. {back}"] if index else []
        )
        page_lines = page.split("\n")
        assert page_lines[-len(footer) :] == footer, (index, page)
        body = page_lines[: -len(footer)]
        assert body and any(line.strip() for line in body), f"page {index} shows nothing"
        shown += body
    assert "".join("".join(shown).split()) == "".join("".join(texts).split())
    for line in lines:  # an option that fits a page is never cut
        if line.whole and fits("\n".join([line.text, f"98. {more}", f"00. {back}"])):
            assert line.text in shown, f"option cut: {line.text!r}"


def squashed(texts: list[str]) -> str:
    return "".join("".join(texts).split())


def check_layout(lines: list[Line], more: str, back: str) -> None:
    """The layout's pages are paginate's, and by the end of each page exactly the first
    ``done`` lines have been shown whole and the first ``begun`` have begun: what the pages
    have shown so far runs from the text of the ``done`` lines into the text of the ``begun``
    ones (longer than the first when a line is split across pages)."""
    paged = layout(lines, more, back)
    assert paged.pages == paginate(lines, more, back)
    assert len(paged.begun) == len(paged.done) == len(paged.pages)
    assert paged.done[-1] == paged.begun[-1] == len(lines)
    texts, bodies = [line.text for line in lines], []
    for page, begun, done in zip(paged.pages, paged.begun, paged.done, strict=True):
        bodies += [t for t in page.split("\n") if t not in (f"98. {more}", f"00. {back}")]
        shown, whole, started = squashed(bodies), squashed(texts[:done]), squashed(texts[:begun])
        assert shown.startswith(whole) and started.startswith(shown), (page, begun, done)
        assert begun - done in (0, 1) and (begun > done) == (len(shown) > len(whole))


def words_kept(lines: list[Line], pages: list[str]) -> list[str]:
    """The words of the pages' content (labels dropped), to compare with the content's."""
    tokens = []
    for page in pages:
        for text in page.split("\n"):
            if not text.startswith(("98. ", "00. ")):
                tokens += text.split()
    return tokens


# -- lengths -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "length", "limit"),
    [
        ("a" * 182, 182, USSD_GSM7),
        ("a" * 181 + "€", 183, USSD_GSM7),  # an extension character counts two
        ("1. Yes\n2. No", 12, USSD_GSM7),  # a line break is one GSM-7 character
        ("a" * 79 + "ç", 80, USSD_UCS2),  # one character outside GSM-7: 80 for the screen
        ("আ" * 80, 80, USSD_UCS2),
        ("ok 👍", 5, USSD_UCS2),  # outside the BMP: two UTF-16 units
    ],
)
def test_screen_length(text: str, length: int, limit: int) -> None:
    assert screen_length(text) == (length, limit)
    assert fits(text) == (length <= limit)


def test_content_that_fits_is_one_screen_without_labels() -> None:
    lines = prompt_lines("Are the fire exits unlocked?", ["Yes", "No", "Not sure"])
    assert paginate(lines, "More", "Back") == [
        "Are the fire exits unlocked?\n1. Yes\n2. No\n3. Not sure"
    ]
    exactly = [Line("a" * 182)]
    assert paginate(exactly, "More", "Back") == ["a" * 182]


def test_three_pages_with_more_and_back() -> None:
    text = " ".join(f"word{n:03d}" for n in range(60))  # 479 characters of prose
    lines = prompt_lines(text, ["Yes", "No"])
    pages = paginate(lines, "More", "Back")
    assert len(pages) == 3
    assert pages[0].endswith("\n98. More") and "00. Back" not in pages[0]
    assert pages[1].endswith("\n98. More\n00. Back")
    assert pages[2].endswith("\n1. Yes\n2. No\n00. Back") and "98. More" not in pages[2]
    assert words_kept(lines, pages) == text.split() + ["1.", "Yes", "2.", "No"]
    check_pages(lines, pages, "More", "Back")


def test_prose_is_split_at_word_boundaries_and_fills_the_page() -> None:
    text = "Did you " + "really " * 30 + "work?"
    pages = paginate(prose(text), "More", "Back")
    first = pages[0].split("\n")[0]
    assert first.endswith("really") and len(first + "\n98. More") <= USSD_GSM7
    assert len(first + " really\n98. More") > USSD_GSM7  # not one more word would fit
    assert words_kept(prose(text), pages) == text.split()


def test_a_line_that_fits_a_page_of_its_own_is_not_split() -> None:
    """A question after a long message starts the next page whole rather than being cut."""
    say = "Please reply with the number of your answer, then wait for the next question. " * 2
    ask = "Did you work more than 10 hours on any day this week?"
    lines = [*prose(say.strip()), *prompt_lines(ask, ["Yes", "No"])]
    pages = paginate(lines, "More", "Back")
    assert pages == [f"{say.strip()}\n98. More", f"{ask}\n1. Yes\n2. No\n00. Back"]


def test_a_line_is_split_when_that_saves_a_page() -> None:
    """The consent after an error: kept whole it would need three pages (the message alone, the
    question and one option, the other option), split it needs two."""
    consent = (
        "WorkerVoice asks a few short questions about your work. Your phone number is never "
        "stored and no one at your workplace sees who answered. Do you agree?"
    )
    lines = [
        *prose("Please reply with a number from 1 to 2."),
        *prompt_lines(consent, ["I agree", "I do not agree"]),
    ]
    pages = paginate(lines, "More", "Back")
    assert len(pages) == 2
    assert pages[0].startswith("Please reply with a number from 1 to 2.\nWorkerVoice asks")
    assert pages[1].endswith("Do you agree?\n1. I agree\n2. I do not agree\n00. Back")
    check_pages(lines, pages, "More", "Back")


def test_an_option_that_does_not_fit_starts_the_next_page_whole() -> None:
    options = [f"Option number {n} with a longer text" for n in range(1, 9)]
    lines = prompt_lines("Choose one:", options)
    pages = paginate(lines, "More", "Back")
    assert len(pages) > 1
    shown = [text for page in pages for text in page.split("\n")]
    assert [text for text in shown if text[:2].rstrip(".").isdigit() and text[1] == "."] == [
        f"{n}. {option}" for n, option in enumerate(options, 1)
    ]
    check_pages(lines, pages, "More", "Back")


def test_a_word_longer_than_a_page_is_cut() -> None:
    lines = [Line("x" * 400)]
    pages = paginate(lines, "More", "Back")
    assert len(pages) == 3
    check_pages(lines, pages, "More", "Back")


def test_each_page_is_measured_on_its_own() -> None:
    """An all-GSM-7 page holds 182 characters even when another page of the same content is
    Bangla, where 80 is the most."""
    english = " ".join(["English"] * 25)  # 199 characters
    lines = [Line("বাংলা ভাষা"), *prose(english)]
    pages = paginate(lines, "More", "Back")
    assert all(fits(page) for page in pages)
    lengths = [screen_length(page) for page in pages]
    assert lengths[0][1] == USSD_UCS2 and lengths[-1][1] == USSD_GSM7
    assert any(length > USSD_UCS2 for length, _ in lengths)
    check_pages(lines, pages, "More", "Back")


def test_translated_labels() -> None:
    more = TEXTS.service("bn", words.PAGE_NEXT)
    back = TEXTS.service("bn", words.PAGE_BACK)
    assert (more, back) != ("More", "Back")
    pages = paginate(prose("আপনার " * 40), more, back)
    assert pages[0].endswith(f"\n98. {more}") and pages[1].endswith(f"\n00. {back}")


# -- every shipped prompt, in every shipped language -------------------------------------------
def shipped_contents():
    """(language, label, lines) for every screen content the shipped flows can produce: each
    question's prompt alone and after each message the engine puts before it (an error, HELP,
    the language set, the enrolment's finish), each finish text, the resume screen, the
    service's closing words; the language menu in every order its options can come in."""
    for lang in TEXTS.languages():
        flow, service = TEXTS.flow, TEXTS.service
        befores = [
            [],
            prose(service(lang, words.CHOOSE_NUMBER).format(count=9)),
            prose(service(lang, words.NUMBER_RANGE).format(min=1, max=7)),
            prose(service(lang, words.CODE_UNKNOWN)),
            prose(service(lang, words.HELP)),
            prose(service(lang, words.LANGUAGE_SET)),
            prose(flow(lang, FLOWS.enrol.finish or "")),
        ]
        for fl in FLOWS.flows.values():
            for question in fl.questions:
                if question.type == LANGUAGE:
                    continue
                ask = prompt_lines(
                    flow(lang, question.ask), [flow(lang, o.text) for o in question.options]
                )
                for n, before in enumerate(befores):
                    yield lang, f"{fl.id}.{question.id}+{n}", [*before, *ask]
            if fl.finish:
                yield lang, f"{fl.id} finish", prose(flow(lang, fl.finish))
        resume = [service(lang, w) for w in (words.CONTINUE, words.START_AGAIN)]
        yield lang, "resume", prompt_lines(service(lang, words.RESUME), resume)
        for msgid in (words.STOPPED, words.DECLINED, words.CODE_FAILED, words.NO_INPUT):
            yield lang, msgid, prose(service(lang, msgid))
        names = [language_name(code) for code in TEXTS.languages()]
        for order in itertools.permutations(names):
            yield (
                lang,
                "language menu",
                prompt_lines(flow(lang, FLOWS.enrol.questions[0].ask), order),
            )


def test_every_shipped_prompt_fits_its_pages_in_every_language() -> None:
    checked = 0
    for lang, label, lines in shipped_contents():
        more = TEXTS.service(lang, words.PAGE_NEXT)
        back = TEXTS.service(lang, words.PAGE_BACK)
        pages = paginate(lines, more, back)
        try:
            check_pages(lines, pages, more, back)
            check_layout(lines, more, back)
            # No shipped word is longer than a page, so no word is ever cut.
            assert words_kept(lines, pages) == [w for line in lines for w in line.text.split()]
            for line in lines:
                if line.whole:  # every option of every shipped menu fits a page whole
                    assert sum(line.text in page.split("\n") for page in pages) == 1
        except AssertionError as exc:
            raise AssertionError(f"{lang} {label}: {exc}") from exc
        checked += 1
    assert checked > 6 * 720  # the language menu's orders alone, in six languages


# -- random contents (a property test, seeded) ------------------------------------------------
VOCABULARY = (
    "Yes No the work pay hours fair € [x] ^ Ça ñ "
    "আপনার কাজ বেতন হ্যাঁ না काम வேலை Kazi malipo 👍 "
    "supercalifragilisticexpialidocious-and-then-some-more-of-it-to-pass-any-limit"
).split()


def random_lines(rng: random.Random) -> list[Line]:
    lines = []
    for _ in range(rng.randint(1, 4)):
        words_ = [rng.choice(VOCABULARY) for _ in range(rng.randint(0, 40))]
        lines.append(Line(" ".join(words_)))
    for n in range(1, rng.randint(1, 9)):
        option = " ".join(rng.choice(VOCABULARY[:12]) for _ in range(rng.randint(1, 4)))
        lines.append(Line(f"{n}. {option}", whole=True))
    return lines


def test_random_contents_keep_every_promise() -> None:
    rng = random.Random(20240304)
    labels = [("More", "Back")] + [
        (TEXTS.service(lang, words.PAGE_NEXT), TEXTS.service(lang, words.PAGE_BACK))
        for lang in ("bn", "ta", "sw")
    ]
    for _ in range(3000):
        lines = random_lines(rng)
        more, back = rng.choice(labels)
        check_pages(lines, paginate(lines, more, back), more, back)
        check_layout(lines, more, back)


# -- a step's screens ------------------------------------------------------------------------
def test_a_step_shows_every_say_and_ask_in_order_with_labels_in_its_language() -> None:
    ask = Ask(
        flow="checkin",
        question="fire_exits",
        type="choice",
        text="Are the fire exits unlocked?",
        options=("Yes", "No"),
        language="en",
    )
    step = Step(Session(current="fire_exits"), (Say("Please reply with 1 or 2."), ask), "en")
    assert ussd.screens(step, TEXTS) == [
        "Please reply with 1 or 2.\nAre the fire exits unlocked?\n1. Yes\n2. No"
    ]
    finished = Step(Session(), (Say("Thank you."), FlowFinished("checkin")), "en")
    assert ussd.screens(finished, TEXTS) == ["Thank you."]
    long_bn = Step(Session(), (Say("আপনার " * 30),), "bn")
    pages = ussd.screens(long_bn, TEXTS)
    assert pages[0].endswith("98. " + TEXTS.service("bn", words.PAGE_NEXT))


def bn_ask(text: str, options: tuple[str, ...] = (), kind: str = "choice") -> Ask:
    return Ask(flow="checkin", question="q", type=kind, text=text, options=options, language="bn")


LONG_BN = "আপনার কাজ নিয়ে কয়েকটি ছোট প্রশ্ন। " * 6  # about three Bangla pages
MANY_BN = tuple(f"বিকল্প নম্বর {n} এখানে" for n in range(1, 9))  # two a page


@pytest.mark.parametrize(
    ("label", "events", "page_of"),
    [
        ("options from the first page on", (bn_ask("রাজি?", MANY_BN),), lambda pages: 0),
        (
            "options over pages after a long prompt: the first page showing one",
            (bn_ask(LONG_BN, MANY_BN),),
            lambda pages: next(n for n, page in enumerate(pages) if "\n1. বিকল্প" in page),
        ),
        (
            "options after a long prompt: the first page showing one",
            (bn_ask(LONG_BN, ("হ্যাঁ", "না")),),
            lambda pages: next(n for n, page in enumerate(pages) if "\n1. হ্যাঁ" in page),
        ),
        (
            "a long message before the question",
            (Say(LONG_BN), bn_ask("রাজি?", ("হ্যাঁ", "না"))),
            lambda pages: next(n for n, page in enumerate(pages) if "রাজি?" in page),
        ),
        (
            "no options: the page where the prompt ends, not where it begins",
            (bn_ask(LONG_BN + "কত দিন?", kind="number"),),
            lambda pages: len(pages) - 1,
        ),
    ],
)
def test_the_page_a_question_is_answered_from(label, events, page_of) -> None:
    shown = ussd.outcome(Step(Session(current="q"), events, "bn"), TEXTS)
    assert len(shown.pages) > 1, label
    assert shown.answer_page == page_of(shown.pages), (label, shown.pages)
    if events[-1].options:  # no page before it shows an option
        assert not any("\n1. " in page for page in shown.pages[: shown.answer_page]), label


def test_a_closing_outcome_is_answered_from_no_page() -> None:
    shown = ussd.outcome(Step(Session(), (Say(LONG_BN),), "bn"), TEXTS)
    assert len(shown.pages) > 1 and shown.answer_page == len(shown.pages)


def test_the_bangla_consent_is_answered_from_its_third_page() -> None:
    consent = FLOWS.enrol.questions[1]
    ask = Ask(
        flow="enrol",
        question=consent.id,
        type=consent.type,
        text=TEXTS.flow("bn", consent.ask),
        options=tuple(TEXTS.flow("bn", o.text) for o in consent.options),
        language="bn",
    )
    shown = ussd.outcome(Step(Session(current=consent.id), (ask,), "bn"), TEXTS)
    assert len(shown.pages) == 3 and shown.answer_page == 2
    assert shown.pages[2].split("\n")[1:3] == [f"{n}. {o}" for n, o in enumerate(ask.options, 1)]


# -- cumulative texts --------------------------------------------------------------------------
def seen(text: str) -> str:
    return ussd.text_digest(SID, text)


@pytest.mark.parametrize(
    ("label", "text", "previous", "consumed", "expected"),
    [
        ("dial-in", "", None, 0, ussd.Reading(None, 0)),
        ("first answer", "1", seen(""), 0, ussd.Reading("1", 1, extends=True)),
        ("next answer", "1*4321", seen("1"), 1, ussd.Reading("4321", 2, extends=True)),
        (
            "several parts at once: the last",
            "1*a*b",
            seen("1"),
            1,
            ussd.Reading("b", 3, extends=True),
        ),
        ("a trailing star: an empty input", "1*", seen("1"), 1, ussd.Reading("", 2, extends=True)),
        ("an empty part inside", "1**2", seen("1*"), 2, ussd.Reading("2", 3, extends=True)),
        ("the same text: a retry", "1*2", seen("1*2"), 2, ussd.Reading("2", 2, retry=True)),
        ("a retried dial-in", "", seen(""), 0, ussd.Reading(None, 0, retry=True)),
        ("not extending: re-based", "3*5", seen("1*2"), 2, ussd.Reading("5", 2)),
        ("same count, other text", "1*3", seen("1*2"), 2, ussd.Reading("3", 2)),
        ("shorter than before", "1", seen("1*2"), 2, ussd.Reading("1", 1)),
        ("no state (expired)", "1*2", None, 0, ussd.Reading("2", 2)),
        ("a dial-in again under the same id", "", seen("1*2"), 2, ussd.Reading(None, 0)),
        (
            "another session's digest",
            "1*2",
            ussd.text_digest("ATUid_x", "1"),
            1,
            ussd.Reading("2", 2),
        ),
    ],
)
def test_reading_a_cumulative_text(label, text, previous, consumed, expected) -> None:
    assert ussd.read(SID, text, previous, consumed) == expected, label


def test_the_kept_digest_is_salted_by_the_session() -> None:
    assert ussd.text_digest(SID, "1*4321") != ussd.text_digest("ATUid_other", "1*4321")
    assert "4321" not in ussd.text_digest(SID, "1*4321")


def test_message_ids_are_the_session_and_the_text_hashed_when_long() -> None:
    assert ussd.message_id(SID, "") == f"{SID} text:"
    assert ussd.message_id(SID, "1*2") == f"{SID} text:1*2"
    long = "1*" * 100
    hashed = ussd.message_id(SID, long)
    assert hashed.startswith(f"{SID} sha256:") and len(hashed) == len(SID) + 48
    assert hashed != ussd.message_id(SID, long + "1")
    assert ussd.end_id(SID) not in {ussd.message_id(SID, t) for t in ("", "end", " end")}
