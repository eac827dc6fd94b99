"""The contact question (``type: contact``): a worker agrees to be contacted later, or not. The
engine emits an event naming what they agreed to; it never sees their number (the hop seals it
into the event, gateway/conversation.py)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from gateway.engine.definition import load_flows
from gateway.engine.events import Ask, ContactAgreed, ContactDeclined
from gateway.engine.inputs import Message
from gateway.engine.runtime import step

from .test_definition import DAILY, ENROL, findings, one_file
from .test_runtime import NOW, context, enrolled_session, round_trip, texts_named

REMIND = """\
title: Reminders
keywords: [REMIND]
questions:
  - id: may_remind
    type: contact
    ask: May we text you before each check-in? Your number is kept encrypted, for this only.
    purposes: [reminders, prize_draws]
    options:
      agree: "Yes"
      decline: "No"
  - id: when
    ask: Morning or evening?
    options: {morning: Morning, evening: Evening}
    only_if: {may_remind: agree}
finish: Thank you.
"""


@pytest.fixture
def flows(tmp_path: Path):
    for name, text in (("enrol", ENROL), ("daily", DAILY), ("remind", REMIND)):
        (tmp_path / f"{name}.yaml").write_text(textwrap.dedent(text), encoding="utf-8")
    return load_flows(tmp_path)


def asked(flows, ctx):
    result = step(flows, enrolled_session(), Message("REMIND"), ctx)
    [ask] = result.of(Ask)
    assert ask.question == "may_remind" and ask.type == "contact"
    assert ask.options == ("Yes", "No")
    return round_trip(result.session)


def test_agreeing_emits_what_was_agreed_to_and_goes_on(flows):
    ctx = context(texts_named("fake"))
    result = step(flows, asked(flows, ctx), Message("1"), ctx)
    assert result.of(ContactAgreed) == [
        ContactAgreed(
            question="may_remind", purposes=("reminders", "prize_draws"), at=NOW.isoformat()
        )
    ]
    assert result.of(ContactAgreed)[0].persist
    assert result.of(Ask)[-1].question == "when"  # only_if sees the agreement
    assert not result.of(ContactDeclined)
    assert "answer_recorded" not in [e.kind for e in result.events]  # no figure is made of it


def test_declining_emits_a_decline_and_skips_what_depends_on_agreeing(flows):
    ctx = context(texts_named("fake"))
    result = step(flows, asked(flows, ctx), Message("2"), ctx)
    assert result.of(ContactDeclined) == [
        ContactDeclined(question="may_remind", at=NOW.isoformat())
    ]
    assert not result.of(ContactAgreed)
    assert result.session is None or result.session.current is None  # the flow finished


def test_an_answer_that_is_no_option_is_asked_again(flows):
    ctx = context(texts_named("fake"))
    result = step(flows, asked(flows, ctx), Message("7"), ctx)
    assert not result.of(ContactAgreed) and not result.of(ContactDeclined)
    assert result.of(Ask)[-1].question == "may_remind"


@pytest.mark.parametrize(
    "question,message",
    [
        (
            "    purposes: [reminders]\n    options: {yes: 'Yes', no: 'No'}",
            "contact options must be 'agree' and 'decline'",
        ),
        ("    options: {agree: 'Yes', decline: 'No'}", "a contact needs 'purposes'"),
        (
            "    purposes: [marketing]\n    options: {agree: 'Yes', decline: 'No'}",
            "unknown purpose 'marketing'",
        ),
        ("    purposes: [reminders]", "a contact needs 'options'"),
    ],
)
def test_a_malformed_contact_question_is_an_error_at_its_line(tmp_path, question, message):
    text = (
        "title: T\nkeywords: [T]\nquestions:\n  - id: c\n    type: contact\n    ask: May we?\n"
        + question
        + "\n"
    )
    found = one_file(tmp_path, text)
    assert any(message in line for line in found), found
    assert all(line.startswith("flow.yaml:") for line in found)


def test_purposes_belong_to_contact_questions_only(tmp_path):
    text = (
        "title: T\nquestions:\n  - id: q\n    ask: Safe?\n    purposes: [reminders]\n"
        "    options: {yes: 'Yes'}\n"
    )
    assert one_file(tmp_path, text) == [
        "flow.yaml:5: question 'q': 'purposes' is for contact questions only"
    ]


def test_a_contact_question_does_not_belong_in_enrolment(tmp_path):
    enrol = ENROL + (
        "  - id: remind\n    type: contact\n    ask: May we?\n    purposes: [reminders]\n"
        "    options: {agree: 'Yes', decline: 'No'}\n"
    )
    assert any(
        "a contact question belongs after enrolment" in f for f in findings(tmp_path, enrol=enrol)
    )
