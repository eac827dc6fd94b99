"""Walking a flow: (flows, session, input, context) -> (session', events). Pure.

Nothing here touches Flask, Redis, SQL or the clock: the caller passes ``Context`` with the time,
the worker's rotation seed, the texts and the workplace directory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date, datetime

from . import words
from .answers import LANGUAGE_PROMPT, Answers
from .events import Ask, Enrolled, Event, FlowFinished, OptedOut, Say, Step
from .keywords import keyword_forms
from .model import ENROL_FLOW, INFO, LANGUAGE, Flow, FlowSet, Question
from .parsing import clean
from .sampling import todays_plan
from .session import Profile, Session
from .texts import Texts, guess_language, language_name, languages_for


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
    session = session.copy() if session is not None else Session()
    run = _Run(flows, session, ctx)
    return run.handle(text or "")


class _Run(Answers):
    """One message's walk through the flows: keywords, starting, asking, finishing. Taking the
    answer to the pending question is in answers.py."""

    def __init__(self, flows: FlowSet, session: Session, ctx: Context):
        self.flows = flows
        self.session = session
        self.ctx = ctx
        self.events: list[Event] = []
        self.session_alive = True
        self.keywords = keyword_forms(flows, ctx.texts)

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

    # -- entry ---------------------------------------------------------------------------
    def handle(self, text: str) -> Step:
        word = clean(text).upper()  # a keyword's form: every keyword matches it this way
        if word in words.OPT_OUT_WORDS or self.keywords.is_reserved(word, words.KEYWORD_STOP):
            self.events.append(OptedOut())
            self.say(words.STOPPED)
            return self.done(None)
        self.drop_if_stale()
        if self.keywords.is_reserved(word, words.KEYWORD_HELP):
            self.say(words.HELP)
            self.ask(self.session.current)
            return self.done(self.session)
        if self.keywords.is_reserved(word, words.KEYWORD_LANG) and self.change_language():
            return self.done(self.session)
        if self.session.idle:
            self.begin(word)
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

    def begin(self, word: str) -> None:
        """No question pending: enrol an unknown worker, else start the flow the word names."""
        if not self.profile.enrolled:
            self.start(self.flows.enrol)
            return
        flow_id = self.keywords.flows.get(word)
        self.start(self.flows[flow_id] if flow_id is not None else self.flows.default)

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


__all__ = ["Context", "step"]
