"""Scenario tests for the flow engine (STYLE §5, goflow's test/runner_test.go).

Each ``scenarios/*.yaml`` file is a conversation: what the worker sends, step by step, and what
the engine must answer (the replies in order: ``Say`` texts as plain strings, ``Ask`` prompts as
mappings) and emit (every other event, in order). Between steps the session is written to JSON
and read back, as Redis would hold it, so nothing survives a step that is not in the session.

Scenario keys: ``flows`` (``test``: scenarios/flows/, ``real``: the repository's flows/),
``texts`` (``fake``: the dict below, ``real``: locales/ through gateway.i18n), ``session`` (the
starting session as its JSON data; absent: no session), ``seed``, ``today``, ``workplaces`` (code
-> slug), ``channel``, ``unsupported`` (question types the channel cannot take) and ``licence``
(the licence version in force; default the first). A step gives
its input as ``send`` (a message), ``dial`` (a new dialog, with the text that began it),
``silence`` (no input, with the number of times the question was already asked again for it),
``hang_up``, ``resume`` (``continue`` or ``restart``) or ``star`` (the star key on a call);
then ``reply``, ``events`` (``{kind: {field: value}}``, fields checked only when given),
``then`` (fields of the session afterwards, ``waiting`` for the outcome, or ``ended``),
``today``, ``channel``. As a real caller does, the
runner looks up the workplace code an input holds (``workplace_code``) before the step.

The last tests here cover what a conversation file cannot: a flow edited under a running
session, and the session's JSON itself.
"""

from __future__ import annotations

import ast
import gc
import json
import weakref
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from gateway.engine import keywords, words
from gateway.engine.definition import FlowSet, load_flows
from gateway.engine.events import (
    AnswerRecorded,
    Ask,
    Event,
    LanguageChanged,
    OptedOut,
    Say,
    Step,
)
from gateway.engine.inputs import DialIn, HangUp, Input, Message, NoInput, ResumeChoice, StarKey
from gateway.engine.keywords import keyword_forms
from gateway.engine.runtime import Context, step, workplace_code
from gateway.engine.session import Profile, Session
from gateway.engine.texts import language_name, languages_for
from gateway.i18n import Texts as CatalogTexts

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
SCENARIOS = sorted((HERE / "scenarios").glob("*.yaml"))
NOW = datetime(2024, 3, 4, 3, 30, tzinfo=UTC)
TODAY = date(2024, 3, 4)

FAKE_FLOWS: dict[str, dict[str, str]] = {
    "bn": {
        "Choose your language.": "আপনার ভাষা বেছে নিন।",
        "Do you agree?": "আপনি কি রাজি?",
        "I agree": "আমি রাজি",
        "I do not agree": "আমি রাজি নই",
        "Type your workplace code.": "আপনার কাজের জায়গার কোড লিখুন।",
        "You are enrolled.": "আপনি যুক্ত হয়েছেন।",
        "Do you feel safe at work?": "কাজে কি আপনি নিরাপদ বোধ করেন?",
        "Yes": "হ্যাঁ",
        "No": "না",
        "Not sure": "নিশ্চিত নই",
        "Thank you.": "ধন্যবাদ।",
        "CHECK": "চেক",
        "A few questions about this week.": "এই সপ্তাহ নিয়ে কয়েকটি প্রশ্ন।",
        "Did you work more than 10 hours on any day?": "কোনো দিন কি ১০ ঘণ্টার বেশি কাজ করেছেন?",
        "On how many days?": "কয় দিন?",
        "How fair is your pay, from 1 to 5?": "আপনার বেতন কতটা ন্যায্য, ১ থেকে ৫?",
        "Anything else?": "আর কিছু?",
        "Thank you. Your answers are anonymous.": "ধন্যবাদ। আপনার উত্তর বেনামী।",
    },
    "sw": {
        "Choose your language.": "Chagua lugha yako.",
        "Do you agree?": "Je, unakubali?",
        "I agree": "Nakubali",
        "I do not agree": "Sikubali",
        "Type your workplace code.": "Andika namba ya mahali pako pa kazi.",
        "You are enrolled.": "Umesajiliwa.",
        "Do you feel safe at work?": "Je, unajisikia salama kazini?",
        "Yes": "Ndiyo",
        "No": "Hapana",
        "Not sure": "Sina uhakika",
        "Thank you.": "Asante.",
        "CHECK": "ANGALIA",
        "A few questions about this week.": "Maswali machache kuhusu wiki hii.",
        "Did you work more than 10 hours on any day?": "Ulifanya kazi zaidi ya saa 10 siku yoyote?",
        "On how many days?": "Siku ngapi?",
        "How fair is your pay, from 1 to 5?": "Mshahara wako ni wa haki kiasi gani, 1 hadi 5?",
        "Anything else?": "Kuna jingine?",
        "Thank you. Your answers are anonymous.": "Asante. Majibu yako hayana jina.",
    },
}
FAKE_SERVICE: dict[str, dict[str, str]] = {
    "bn": {
        words.KEYWORD_STOP: "বন্ধ",
        words.KEYWORD_HELP: "সাহায্য",
        words.KEYWORD_LANG: "ভাষা",
        words.HELP: "সাহায্য: উত্তরের নম্বর লিখুন।",
        words.STOPPED: "আপনি বের হয়ে গেছেন।",
        words.DECLINED: "আপনি রাজি হননি।",
        words.CHOOSE_NUMBER: "1 থেকে {count} পর্যন্ত নম্বর লিখুন।",
        words.NUMBER_RANGE: "{min} থেকে {max} পর্যন্ত নম্বর লিখুন।",
        words.TEXT_EMPTY: "উত্তর লিখুন।",
        words.CODE_UNKNOWN: "কোডটি চিনি না।",
        words.CODE_FAILED: "কাজের জায়গা পাওয়া যায়নি।",
        words.LANGUAGE_SET: "ভাষা বদলানো হয়েছে।",
    },
    "sw": {
        words.KEYWORD_STOP: "ACHA",
        words.KEYWORD_HELP: "MSAADA",
        words.KEYWORD_LANG: "LUGHA",
        words.HELP: "Msaada: jibu kwa namba.",
        words.STOPPED: "Umeondoka.",
        words.DECLINED: "Hukukubali.",
        words.CHOOSE_NUMBER: "Jibu kwa namba kuanzia 1 hadi {count}.",
        words.NUMBER_RANGE: "Jibu kwa namba kuanzia {min} hadi {max}.",
        words.TEXT_EMPTY: "Tafadhali andika jibu lako.",
        words.CODE_UNKNOWN: "Hatujui namba hiyo.",
        words.CODE_FAILED: "Hatukupata mahali pako pa kazi.",
        words.LANGUAGE_SET: "Lugha imebadilishwa.",
    },
}


class FakeTexts:
    """The engine's Texts protocol over plain dicts: a missing msgid falls back to itself."""

    def __init__(self, flows: dict[str, dict[str, str]], service: dict[str, dict[str, str]]):
        self._flows = flows
        self._service = service

    def flow(self, language: str | None, msgid: str) -> str:
        return self._flows.get(language or "", {}).get(msgid, msgid)

    def service(self, language: str | None, msgid: str) -> str:
        return self._service.get(language or "", {}).get(msgid, msgid)

    def languages(self) -> list[str]:
        return sorted(set(self._flows) | {"en"})


FLOWS = {"test": HERE / "scenarios" / "flows", "real": ROOT / "flows"}
_loaded: dict[str, FlowSet] = {}
_real_texts: list[CatalogTexts] = []


def flows_named(name: str) -> FlowSet:
    if name not in _loaded:
        _loaded[name] = load_flows(FLOWS[name])
    return _loaded[name]


def texts_named(name: str) -> Any:
    if name == "fake":
        return FakeTexts(FAKE_FLOWS, FAKE_SERVICE)
    if not _real_texts:
        _real_texts.append(CatalogTexts.load(ROOT / "locales"))
    return _real_texts[0]


def context(
    texts: Any,
    today: date = TODAY,
    seed: int = 0,
    places: dict | None = None,
    channel: str = "sms",
    unsupported: frozenset[str] = frozenset(),
    licence: str = "1",
) -> Context:
    places = {str(code): slug for code, slug in (places or {}).items()}
    return Context(
        now=NOW,
        today=today,
        seed=seed,
        texts=texts,
        workplaces=places,
        channel=channel,
        unsupported=unsupported,
        licence=licence,
    )


def given(item: dict) -> Input:
    """A scenario step's input."""
    if "send" in item:
        return Message(str(item["send"]))
    if "dial" in item:
        return DialIn(str(item["dial"] or ""))
    if "silence" in item:
        return NoInput(int(item["silence"]))
    if "hang_up" in item:
        return HangUp()
    if "resume" in item:
        return ResumeChoice(item["resume"] == "continue")
    if "star" in item:
        return StarKey()
    raise AssertionError(f"a step without an input: {item}")


def resolved(ctx: Context, flows: FlowSet, session: Session | None, value: Input) -> Context:
    """The context with the workplace code the input holds looked up, as the caller does."""
    code = workplace_code(flows, session, value)
    if code is None:
        return replace(ctx, workplaces={})
    return replace(ctx, workplaces={code: ctx.workplaces.get(code)})


def round_trip(session: Session | None) -> Session | None:
    """The session as the next step sees it: through JSON, as Redis holds it."""
    if session is None:
        return None
    data = session.to_json()
    json.loads(data)  # plain JSON, nothing Python-specific
    restored = Session.from_json(data)
    assert restored == session, "the session changed on its way through JSON"
    assert restored.to_json() == data
    return restored


def rendered_reply(events: tuple[Event, ...]) -> list[Any]:
    """Say as its text, Ask as a mapping in the scenario's shape."""
    reply: list[Any] = []
    for event in events:
        if isinstance(event, Say):
            reply.append(event.text)
        elif isinstance(event, Ask):
            item: dict[str, Any] = {
                "ask": f"{event.flow}.{event.question}",
                "text": event.text,
                "options": list(event.options),
            }
            if event.min is not None or event.max is not None:
                item["min"], item["max"] = event.min, event.max
            reply.append(item)
    return reply


def expected_reply(items: list[Any]) -> list[Any]:
    expected: list[Any] = []
    for item in items or []:
        if isinstance(item, str):
            expected.append(item)
        else:
            shaped = {"ask": item["ask"], "text": item["text"], "options": item.get("options", [])}
            if "min" in item or "max" in item:
                shaped["min"], shaped["max"] = item.get("min"), item.get("max")
            expected.append(shaped)
    return expected


def check_events(where: str, events: tuple[Event, ...], wanted: list[Any]) -> None:
    others = [e.to_dict() for e in events if not isinstance(e, Say | Ask)]
    wanted = [w if isinstance(w, dict) else {w: {}} for w in wanted or []]
    kinds = [next(iter(w)) for w in wanted]
    assert [e["kind"] for e in others] == kinds, f"{where}: events {others}"
    for got, want in zip(others, wanted, strict=True):
        for name, value in (next(iter(want.values())) or {}).items():
            assert got[name] == value, f"{where}: {got['kind']}.{name} is {got[name]!r}"


def check_session(where: str, result: Step, then: Any) -> None:
    session = result.session
    if then == "ended":
        assert session is None, f"{where}: the session should have ended"
        return
    assert session is not None, f"{where}: the session ended"
    fields = {
        "current": session.current,
        "flow": session.flow,
        "version": session.version,
        "language": session.profile.language,
        "workplace": session.profile.workplace,
        "enrolled": session.profile.enrolled,
        "answers": session.answers,
        "tries": session.tries,
        "channel": session.channel,
        "resume": session.resume,
        "licence": session.profile.licence,
    }
    for name, value in then.items():
        if name == "waiting":
            assert (result.waiting is not None) == value, f"{where}: waiting is {result.waiting}"
            continue
        assert fields[name] == value, f"{where}: session {name} is {fields[name]!r}"


def run_scenario(path: Path) -> None:
    scenario = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    flows = flows_named(scenario.get("flows", "test"))
    texts = texts_named(scenario.get("texts", "fake"))
    start = scenario.get("session")
    session = Session.from_json(json.dumps(start)) if start is not None else None
    for number, item in enumerate(scenario["steps"], 1):
        value = given(item)
        where = f"{path.name} step {number} ({value!r})"
        today = date.fromisoformat(str(item.get("today", scenario.get("today", TODAY))))
        ctx = context(
            texts,
            today,
            scenario.get("seed", 0),
            scenario.get("workplaces"),
            channel=item.get("channel", scenario.get("channel", "sms")),
            unsupported=frozenset(scenario.get("unsupported", ())),
            licence=str(item.get("licence", scenario.get("licence", "1"))),
        )
        result = step(flows, session, value, resolved(ctx, flows, session, value))
        assert rendered_reply(result.events) == expected_reply(item.get("reply")), where
        check_events(where, result.events, item.get("events"))
        if "then" in item:
            check_session(where, result, item["then"])
        session = round_trip(result.session)


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario(path: Path) -> None:
    run_scenario(path)


def test_there_are_scenarios() -> None:
    assert len(SCENARIOS) >= 10


# -- what a conversation file cannot show ----------------------------------------------------
ENROLLED = Profile(language="en", workplace="acme", country="BD", enrolled=True)
LANGUAGES_BD = ["বাংলা", "English", "Kiswahili"]


def enrolled_session() -> Session:
    return Session(profile=Profile(**vars(ENROLLED)))


@pytest.mark.parametrize("word", sorted(words.OPT_OUT_WORDS) + ["stop", " Stop. ", "optout"])
def test_every_opt_out_word_ends_the_session_mid_question(word: str) -> None:
    flows, ctx = flows_named("test"), context(texts_named("fake"))
    asked = step(flows, enrolled_session(), Message("CHECK"), ctx).session
    assert asked is not None and asked.current == "long_hours"
    result = step(flows, round_trip(asked), Message(word), ctx)
    assert result.session is None
    assert [type(e) for e in result.events] == [OptedOut, Say]
    assert result.events[1] == Say(words.STOPPED, msgid=words.STOPPED, language="en")


def test_the_input_session_is_not_changed() -> None:
    flows, ctx = flows_named("test"), context(texts_named("fake"))
    before = enrolled_session()
    snapshot = before.to_json()
    step(flows, before, Message("CHECK"), ctx)
    assert before.to_json() == snapshot


def test_a_flow_edited_under_a_running_session_starts_afresh(tmp_path: Path) -> None:
    """Flows reload while sessions live on (SPEC §4): a pending question from an older version
    may be gone, so the session drops the old run instead of failing."""
    source = FLOWS["test"]
    for path in source.glob("*.yaml"):
        (tmp_path / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    flows, ctx = flows_named("test"), context(texts_named("fake"))
    session = round_trip(step(flows, enrolled_session(), Message("CHECK"), ctx).session)
    session = round_trip(step(flows, session, Message("1"), ctx).session)
    assert session is not None and session.current == "long_hours_days"
    edited = (tmp_path / "checkin.yaml").read_text(encoding="utf-8")
    edited = edited.replace("version: 3", "version: 4").replace("long_hours_days", "days_over")
    (tmp_path / "checkin.yaml").write_text(edited, encoding="utf-8")
    result = step(load_flows(tmp_path), session, Message("3"), ctx)
    # "3" answered a question that no longer exists: the default flow starts instead.
    assert [e for e in result.events if isinstance(e, AnswerRecorded)] == []
    assert result.session is not None and result.session.flow == "daily"
    assert result.session.version == "d1" and result.session.current == "safe"


def test_a_removed_flow_under_a_running_session_is_forgotten(tmp_path: Path) -> None:
    for name in ("enrol.yaml", "daily.yaml"):
        text = (FLOWS["test"] / name).read_text(encoding="utf-8")
        (tmp_path / name).write_text(text, encoding="utf-8")
    flows, ctx = flows_named("test"), context(texts_named("fake"))
    session = round_trip(step(flows, enrolled_session(), Message("CHECK"), ctx).session)
    assert session is not None and session.flow == "checkin"
    without_checkin = load_flows(tmp_path)

    helped = step(without_checkin, session, Message("HELP"), ctx)
    assert helped.events == (Say(words.HELP, msgid=words.HELP, language="en"),)
    assert helped.session is not None and (helped.session.flow, helped.session.current) == (
        None,
        None,
    )
    menu = step(without_checkin, session, Message("LANG"), ctx)
    assert rendered_reply(menu.events) == [
        {"ask": "enrol.@language", "text": "Choose your language.", "options": LANGUAGES_BD}
    ]
    assert menu.session is not None and menu.session.resume is None
    answered = step(without_checkin, session, Message("1"), ctx)
    assert rendered_reply(answered.events) == [
        {
            "ask": "daily.safe",
            "text": "Do you feel safe at work?",
            "options": ["Yes", "No", "Not sure"],
        }
    ]
    assert answered.of(AnswerRecorded) == []


def test_session_json_is_compact_and_keeps_unicode_and_numbers() -> None:
    session = Session(
        profile=Profile(language="bn", workplace="acme", country="BD", enrolled=True),
        flow="checkin",
        version="3",
        plan=["pay_fair", "comment"],
        current="pay_fair",
        answers={"long_hours": "yes", "long_hours_days": 3, "rate": 2.5, "note": "ভালো"},
        tries=1,
        resume=None,
    )
    data = session.to_json()
    assert "ভালো" in data and " " not in data.replace("ভালো", "")
    restored = Session.from_json(data.encode())
    assert restored == session
    assert restored.answers["long_hours_days"] == 3 and isinstance(
        restored.answers["long_hours_days"], int
    )
    assert Session.from_json("{}") == Session()


def test_session_json_from_another_version_still_reads() -> None:
    """A deploy may meet sessions written by the version before or after it."""
    data = json.dumps(
        {
            "profile": {"language": "bn", "enrolled": True, "channel_hint": "sms"},
            "flow": "daily",
            "version": "d1",
            "current": "safe",
            "plan": [],
            "started_at": "2024-03-04T03:00:00+00:00",
        }
    )
    session = Session.from_json(data)
    assert session.profile == Profile(language="bn", enrolled=True)
    assert (session.flow, session.current, session.answers, session.tries) == (
        "daily",
        "safe",
        {},
        0,
    )
    result = step(flows_named("test"), session, Message("1"), context(texts_named("fake")))
    assert [e.to_dict()["value"] for e in result.of(AnswerRecorded)] == ["yes"]


def test_a_language_change_is_stamped_with_the_time_like_enrolment() -> None:
    flows, ctx = flows_named("test"), context(texts_named("fake"))
    menu = step(flows, enrolled_session(), Message("LANG"), ctx).session
    result = step(flows, round_trip(menu), Message("3"), ctx)
    [changed] = result.of(LanguageChanged)
    assert changed.to_dict() == {
        "kind": "language_changed",
        "language": "sw",
        "at": NOW.isoformat(),
    }


def test_the_session_copy_shares_nothing_the_engine_changes() -> None:
    session = Session(
        profile=Profile(language="bn", country="BD"),
        flow="checkin",
        plan=["a", "b"],
        current="a",
        answers={"x": "yes"},
    )
    copied = session.copy()
    assert copied == session
    copied.profile.language = "sw"
    copied.plan.pop(0)
    copied.answers["y"] = 3
    copied.current = "b"
    assert session == Session(
        profile=Profile(language="bn", country="BD"),
        flow="checkin",
        plan=["a", "b"],
        current="a",
        answers={"x": "yes"},
    )


class CountingTexts(FakeTexts):
    def __init__(self) -> None:
        super().__init__(FAKE_FLOWS, FAKE_SERVICE)
        self.lookups = 0

    def flow(self, language: str | None, msgid: str) -> str:
        self.lookups += 1
        return super().flow(language, msgid)

    def service(self, language: str | None, msgid: str) -> str:
        self.lookups += 1
        return super().service(language, msgid)


def test_keyword_forms_are_built_once_per_flows_and_texts() -> None:
    flows, texts = flows_named("test"), CountingTexts()
    assert keyword_forms(flows, texts) is keyword_forms(flows, texts)
    session = round_trip(step(flows, enrolled_session(), Message("HELP"), context(texts)).session)
    before = texts.lookups
    for word in ("ACHA?", "msaada", "LUGHA", "angalia", "hello"):
        step(flows, session, Message(word), context(texts))
    per_message = (texts.lookups - before) / 5
    # The forms are not rebuilt: a message costs a few lookups for its reply, not one per
    # keyword, language and flow.
    assert per_message < len(texts.languages()) * 3
    reloaded = CountingTexts()  # files reloaded: new texts, new forms
    assert keyword_forms(flows, reloaded) is not keyword_forms(flows, texts)
    assert keyword_forms(flows, reloaded) == keyword_forms(flows, texts)


def test_the_keyword_cache_holds_its_keys_weakly_and_stays_small() -> None:
    flows = flows_named("test")
    texts = CountingTexts()
    keyword_forms(flows, texts)
    alive = weakref.ref(texts)
    del texts
    gc.collect()
    assert alive() is None, "the cache keeps an old Texts alive"
    for _ in range(3 * keywords.CACHE_SIZE):
        keyword_forms(flows, CountingTexts())
    assert len(keywords._cache) <= keywords.CACHE_SIZE


class SlotTexts:
    """A Texts without weak reference support still gets correct (uncached) forms."""

    __slots__ = ()

    def flow(self, language: str | None, msgid: str) -> str:
        return {"CHECK": "ANGALIA"}.get(msgid, msgid) if language == "sw" else msgid

    def service(self, language: str | None, msgid: str) -> str:
        return {"STOP": "ACHA"}.get(msgid, msgid) if language == "sw" else msgid

    def languages(self) -> list[str]:
        return ["en", "sw"]


def test_keyword_forms_without_weak_references() -> None:
    forms = keyword_forms(flows_named("test"), SlotTexts())
    assert forms.is_reserved("ACHA", words.KEYWORD_STOP)
    assert not forms.is_reserved("", words.KEYWORD_STOP)
    assert forms.flows["ANGALIA"] == forms.flows["CHECK"] == "checkin"


def test_language_lists_are_cached_but_never_shared() -> None:
    first = languages_for("BD", ["en", "bn", "sw"])
    first.append("xx")
    assert languages_for("BD", ["en", "bn", "sw"]) == ["bn", "en", "sw"]
    assert language_name("bn") is language_name("bn")


ENGINE = ROOT / "gateway" / "engine"
FORBIDDEN = {"flask", "redis", "rq", "sqlalchemy", "requests", "fakeredis", "random", "time"}


@pytest.mark.parametrize("path", sorted(ENGINE.glob("*.py")), ids=lambda p: p.name)
def test_the_engine_stays_pure(path: Path) -> None:
    """No framework, store, network, clock or randomness in the engine (STYLE §1, §9): they come
    in through Context."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        else:
            names = []
        for name in names:
            assert name.split(".")[0] not in FORBIDDEN | {"gateway", "store", "aggregator"}, name
        if isinstance(node, ast.Attribute):
            assert (
                node.attr not in {"now", "utcnow", "today"}
                or not isinstance(node.value, ast.Name)
                or node.value.id not in {"datetime", "date"}
            ), f"{path.name}: reads the clock"


@pytest.mark.parametrize("menu", ["@language", "@resume"])
def test_delete_kept_from_a_service_menu_returns_to_the_flows_question(menu: str) -> None:
    flows, texts = flows_named("test"), texts_named("fake")
    first = step(flows, enrolled_session(), Message("CHECK"), context(texts))
    session = first.session
    assert session is not None and session.current == "long_hours"
    session.current, session.resume = menu, "long_hours"
    asked = step(flows, round_trip(session), Message("DELETE"), context(texts))
    assert asked.session is not None and asked.session.current == "@erase"
    kept = step(flows, round_trip(asked.session), Message("no"), context(texts))
    assert [e.text for e in kept.of(Say)] == [words.ERASE_KEPT]
    assert kept.session is not None and kept.session.current == "long_hours"
    assert kept.waiting is not None and kept.waiting.question == "long_hours"
    assert not kept.of(OptedOut)
