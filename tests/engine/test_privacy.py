"""The engine keeps no phone number: free text is scrubbed before the session or an event holds
it, and a number question never takes a phone number as its answer."""

from __future__ import annotations

from datetime import UTC, datetime

from gateway.engine.definition import load_flows
from gateway.engine.events import AnswerRecorded
from gateway.engine.inputs import Message
from gateway.engine.parsing import MAX_NUMBER_DIGITS, parse_number
from gateway.engine.runtime import Context, step
from gateway.engine.session import Profile, Session
from gateway.identity import scrub

from .test_runtime import HERE, FakeTexts

NOW = datetime(2024, 3, 4, 3, 30, tzinfo=UTC)
FLOWS = load_flows(HERE / "scenarios" / "flows")
ENROLLED = Profile(language="en", workplace="mill", country="BD", enrolled=True)


class Texts(FakeTexts):
    def languages(self) -> list[str]:
        return ["en"]


def context() -> Context:
    return Context(
        now=NOW, today=NOW.date(), seed=0, texts=Texts({}, {}), scrub=lambda text: scrub(text, "BD")
    )


def at_question(qid: str) -> Session:
    flow = FLOWS["checkin"]
    return Session(profile=ENROLLED, flow="checkin", version=flow.version, plan=[], current=qid)


def test_a_number_typed_into_free_text_is_kept_nowhere():
    result = step(
        FLOWS, at_question("comment"), Message("call me on 01711 000 001 please"), context()
    )
    [answer] = result.of(AnswerRecorded)
    assert answer.value == "call me on [number removed] please"
    kept = result.session.to_json() if result.session else ""
    assert "01711" not in kept and "000 001" not in kept


def test_a_phone_number_is_not_a_number_answer():
    session = at_question("pay_fair")
    result = step(FLOWS, session, Message("01711000001"), context())
    assert not result.of(AnswerRecorded)
    assert result.session is not None and result.session.current == "pay_fair"
    assert "01711000001" not in result.session.to_json()


def test_numbers_longer_than_the_limit_are_refused_in_any_script():
    assert parse_number("9" * MAX_NUMBER_DIGITS) == float("9" * MAX_NUMBER_DIGITS)
    assert parse_number("9" * (MAX_NUMBER_DIGITS + 1)) is None
    assert parse_number("০১৭১১০০০০০১") is None  # Bengali digits
    assert parse_number("9" * 400) is None  # would be infinity
