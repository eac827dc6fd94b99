"""Walking a flow: (flows, session, input, context) -> (session', events). Pure.

Nothing here touches Flask, Redis, SQL or the clock: the caller passes ``Context`` with the time,
the worker's rotation seed, the texts and the workplace directory.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date, datetime

from . import words
from .definition import OPT_OUT_WORDS
from .events import (
    AnswerRecorded,
    Ask,
    Declined,
    Enrolled,
    Event,
    FlowFinished,
    LanguageChanged,
    OptedOut,
    Say,
    Step,
)
from .model import (
    CHOICE,
    CONSENT,
    ENROL_FLOW,
    INFO,
    LANGUAGE,
    NUMBER,
    TEXT,
    WORKPLACE,
    Flow,
    FlowSet,
    Question,
)
from .parsing import as_number_text, ascii_digits, clean, parse_number, pick_option
from .sampling import todays_plan
from .session import Profile, Session
from .texts import SOURCE_LANGUAGE, Texts, guess_language, language_name, languages_for

WORKPLACE_TRIES = 3
LANGUAGE_PROMPT = "@language"  # pseudo question used by LANG outside enrolment


@dataclass(frozen=True)
class Context:
    """Everything outside the engine that one step may need, passed in."""

    now: datetime  # aware, UTC
    today: date  # the worker's workplace day, for the daily rotation
    seed: int  # stable per worker; spreads workers over the rotation
    texts: Texts
    find_workplace: Callable[[str], str | None] = field(default=lambda code: None)
    # Free text passes through this before it is kept anywhere, session included: the caller
    # gives the identity module's phone-number scrubber.
    scrub: Callable[[str], str] = field(default=lambda text: text)


def step(flows: FlowSet, session: Session | None, text: str, ctx: Context) -> Step:
    """Apply one message from the worker and return the new session and the events."""
    session = copy.deepcopy(session) if session is not None else Session()
    run = _Run(flows, session, ctx)
    return run.handle(text or "")


class _Run:
    def __init__(self, flows: FlowSet, session: Session, ctx: Context):
        self.flows = flows
        self.session = session
        self.ctx = ctx
        self.events: list[Event] = []
        self.session_alive = True

    # -- helpers -------------------------------------------------------------------------
    @property
    def profile(self) -> Profile:
        return self.session.profile

    @property
    def language(self) -> str:
        return self.profile.language or guess_language(
            self.profile.country, self.ctx.texts.languages()
        )

    def say(self, msgid: str, **values: object) -> None:
        self.events.append(Say(self.ctx.texts.service(self.language, msgid).format(**values)))

    def done(self, session: Session | None) -> Step:
        return Step(session, tuple(self.events))

    def keyword(self, text: str, msgid: str) -> bool:
        word = clean(text).upper()
        if not word:
            return False
        forms = {msgid.upper()}
        for lang in self.ctx.texts.languages():
            forms.add(clean(self.ctx.texts.service(lang, msgid)).upper())
        return word in forms

    # -- entry ---------------------------------------------------------------------------
    def handle(self, text: str) -> Step:
        if clean(text).upper() in OPT_OUT_WORDS or self.keyword(text, words.KEYWORD_STOP):
            self.events.append(OptedOut())
            self.say(words.STOPPED)
            return self.done(None)
        self.drop_if_stale()
        if self.keyword(text, words.KEYWORD_HELP):
            self.say(words.HELP)
            self.ask(self.session.current)
            return self.done(self.session)
        if self.keyword(text, words.KEYWORD_LANG) and self.change_language():
            return self.done(self.session)
        if self.session.idle:
            self.begin(text)
        else:
            self.answer(text)
        return self.done(self.session if self.session_alive else None)

    def drop_if_stale(self) -> None:
        """Forget a flow that was changed or removed since the session started it.

        A running service reloads edited flow files (SPEC §4); the pending question may be gone
        or mean something else now, so the session goes back to idle and the input starts afresh.
        """
        if self.session.flow is None:
            return
        flow = self.flows.flows.get(self.session.flow)
        if flow is not None and flow.version == self.session.version:
            return
        self.session.flow = self.session.version = None
        self.session.plan, self.session.answers, self.session.tries = [], {}, 0
        if self.session.current != LANGUAGE_PROMPT:
            self.session.current = None
        self.session.resume = None

    def change_language(self) -> bool:
        """LANG: ask the language menu, then return to the pending question. False if LANG is
        better treated as an ordinary first message (an unknown worker: enrolment asks anyway)."""
        if not self.profile.enrolled and self.session.idle:
            return False
        if self.session.current not in (LANGUAGE_PROMPT, None):
            question = self.flow.question(self.session.current)
            if question.type == LANGUAGE:  # already the language menu: ask it again
                self.ask(question.id)
                return True
        if self.session.current != LANGUAGE_PROMPT:
            self.session.resume = self.session.current
        self.session.current = LANGUAGE_PROMPT
        self.ask(LANGUAGE_PROMPT)
        return True

    def begin(self, text: str) -> None:
        """No question pending: enrol an unknown worker, else start the flow the text names."""
        if not self.profile.enrolled:
            self.start(self.flows.enrol)
            return
        self.start(self.flow_for_keyword(text) or self.flows.default)

    def flow_for_keyword(self, text: str) -> Flow | None:
        word = clean(text).upper()
        for flow in self.flows.flows.values():
            for keyword in flow.keywords:
                forms = {keyword} | {
                    clean(self.ctx.texts.flow(lang, keyword)).upper()
                    for lang in self.ctx.texts.languages()
                }
                if word in forms:
                    return flow
        return None

    def start(self, flow: Flow) -> None:
        self.session.flow = flow.id
        self.session.version = flow.version
        self.session.answers = {}
        self.session.tries = 0
        if flow.id == ENROL_FLOW:
            self.session.plan = [q.id for q in flow.questions]
        else:
            self.session.plan = todays_plan(flow, self.ctx.today, self.ctx.seed)
        self.advance()

    @property
    def flow(self) -> Flow:
        if self.session.flow is None:
            raise RuntimeError("no flow is running")
        return self.flows[self.session.flow]

    def advance(self) -> None:
        """Ask the next question of the plan whose conditions hold, or finish the flow."""
        while self.session.plan:
            question = self.flow.question(self.session.plan.pop(0))
            if not self.applies(question):
                continue
            if question.type == INFO:
                self.events.append(Say(self.ctx.texts.flow(self.language, question.ask)))
                continue
            self.session.current = question.id
            self.session.tries = 0
            self.ask(question.id)
            return
        self.finish()

    def applies(self, question: Question) -> bool:
        return all(
            str(self.session.answers.get(ref)) in values for ref, values in question.only_if.items()
        )

    def finish(self) -> None:
        flow = self.flow
        self.session.current = None
        if flow.finish:
            self.events.append(Say(self.ctx.texts.flow(self.language, flow.finish)))
        self.events.append(FlowFinished(flow.id))
        if flow.id == ENROL_FLOW:
            if self.profile.workplace is None:  # load_flows makes enrol ask for it
                raise RuntimeError("enrolment finished without a workplace")
            self.profile.enrolled = True
            self.events.append(
                Enrolled(
                    language=self.language,
                    workplace=self.profile.workplace,
                    at=self.ctx.now.isoformat(),
                )
            )
            self.start(self.flows.default)
            return
        self.session.flow = self.session.version = None
        self.session.plan, self.session.answers = [], {}

    # -- asking --------------------------------------------------------------------------
    def language_choices(self) -> list[str]:
        return languages_for(self.profile.country, self.ctx.texts.languages())

    def ask(self, qid: str | None) -> None:
        """Emit the prompt for a question (LANGUAGE_PROMPT: enrolment's language question)."""
        if qid is None:
            return
        if qid == LANGUAGE_PROMPT:
            flow_id = ENROL_FLOW
            prompt = next(q for q in self.flows.enrol.questions if q.type == LANGUAGE)
            question = replace(prompt, id=LANGUAGE_PROMPT)
        else:
            flow_id, question = self.flow.id, self.flow.question(qid)
        lang = self.language
        if question.type == LANGUAGE:
            options = tuple(language_name(code) for code in self.language_choices())
        else:
            options = tuple(self.ctx.texts.flow(lang, o.text) for o in question.options)
        self.events.append(
            Ask(
                flow=flow_id,
                question=question.id,
                type=question.type,
                text=self.ctx.texts.flow(lang, question.ask),
                options=options,
                min=question.min,
                max=question.max,
                language=lang,
            )
        )

    # -- answering -----------------------------------------------------------------------
    def answer(self, text: str) -> None:
        qid = self.session.current
        if qid == LANGUAGE_PROMPT:
            self.answer_language_change(text)
            return
        if qid is None:
            raise RuntimeError("no question is pending")
        question = self.flow.question(qid)
        handler = {
            CHOICE: self.answer_choice,
            NUMBER: self.answer_number,
            TEXT: self.answer_text,
            LANGUAGE: self.answer_language,
            CONSENT: self.answer_consent,
            WORKPLACE: self.answer_workplace,
        }[question.type]
        handler(question, text)

    def retry(self, question_id: str, msgid: str, **values: object) -> None:
        self.say(msgid, **values)
        self.ask(question_id)

    def choose(self, question: Question, text: str) -> str | None:
        lang = self.language
        names = [(self.ctx.texts.flow(lang, o.text), o.text, o.value) for o in question.options]
        index = pick_option(text, names)
        if index is None:
            self.retry(question.id, words.CHOOSE_NUMBER, count=len(question.options))
            return None
        return question.options[index].value

    def record(self, question: Question, value: str | float) -> None:
        self.session.answers[question.id] = value
        if self.flow.id != ENROL_FLOW:
            self.events.append(
                AnswerRecorded(
                    flow=self.flow.id,
                    version=self.flow.version,
                    question=question.id,
                    value=value,
                    at=self.ctx.now.isoformat(),
                    workplace=self.profile.workplace,
                )
            )
        self.advance()

    def answer_choice(self, question: Question, text: str) -> None:
        value = self.choose(question, text)
        if value is not None:
            self.record(question, value)

    def answer_number(self, question: Question, text: str) -> None:
        number = parse_number(text)
        low = question.min if question.min is not None else float("-inf")
        high = question.max if question.max is not None else float("inf")
        if number is None or not low <= number <= high:
            if question.min is not None and question.max is not None:
                self.retry(
                    question.id,
                    words.NUMBER_RANGE,
                    min=as_number_text(question.min),
                    max=as_number_text(question.max),
                )
            else:
                self.retry(question.id, words.NUMBER_ANY)
            return
        self.record(question, as_number_text(number))

    def answer_text(self, question: Question, text: str) -> None:
        if not text.strip():
            self.retry(question.id, words.TEXT_EMPTY)
            return
        self.record(question, self.ctx.scrub(text.strip()))

    def pick_language(self, text: str) -> str | None:
        codes = self.language_choices()
        index = pick_option(text, [(language_name(c), c) for c in codes])
        return codes[index] if index is not None else None

    def answer_language(self, question: Question, text: str) -> None:
        code = self.pick_language(text)
        if code is None:
            self.retry(question.id, words.CHOOSE_NUMBER, count=len(self.language_choices()))
            return
        self.profile.language = code
        self.session.answers[question.id] = code
        self.advance()

    def answer_language_change(self, text: str) -> None:
        code = self.pick_language(text)
        if code is None:
            self.retry(LANGUAGE_PROMPT, words.CHOOSE_NUMBER, count=len(self.language_choices()))
            return
        self.profile.language = code
        if self.profile.enrolled:
            self.events.append(LanguageChanged(code))
        self.say(words.LANGUAGE_SET)
        self.session.current, self.session.resume = self.session.resume, None
        if self.session.current is not None:
            self.ask(self.session.current)

    def answer_consent(self, question: Question, text: str) -> None:
        value = self.choose(question, text)
        if value is None:
            return
        if value == "decline":
            self.events.append(Declined())
            self.say(words.DECLINED)
            self.session_alive = False
            return
        self.session.answers[question.id] = value
        self.advance()

    def answer_workplace(self, question: Question, text: str) -> None:
        code = ascii_digits(text.replace(" ", ""))
        slug = self.ctx.find_workplace(code) if code and 4 <= len(code) <= 8 else None
        if slug is None:
            self.session.tries += 1
            if self.session.tries >= WORKPLACE_TRIES:
                self.say(words.CODE_FAILED)
                self.session_alive = False
                return
            self.retry(question.id, words.CODE_UNKNOWN)
            return
        self.profile.workplace = slug
        self.session.answers[question.id] = slug
        self.advance()


__all__ = ["Context", "step", "SOURCE_LANGUAGE", "OPT_OUT_WORDS"]
