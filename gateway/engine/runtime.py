"""Walking a flow: (flows, session, input, context) -> (session', events, outcome). Pure.

Nothing here touches Flask, Redis, SQL or the clock: the caller passes ``Context`` with the time,
the worker's rotation seed, the texts, and the workplace codes it resolved for this input
(``workplace_code`` says which one the input holds, before the step).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime

from . import words
from .answers import (
    ERASE_OPTIONS,
    ERASE_PROMPT,
    ERASE_VALUES,
    LANGUAGE_PROMPT,
    PROMPTS,
    RESUME_OPTIONS,
    RESUME_PROMPT,
    RESUME_VALUES,
    STAR_OPTIONS,
    STAR_PROMPT,
    STAR_VALUES,
    Answers,
    code_digits,
)
from .consent import FIRST_LICENCE, Consent
from .events import Ask, Consented, Enrolled, Event, FlowFinished, OptedOut, Say, Step
from .inputs import DialIn, HangUp, Input, Message, NoInput, ResumeChoice, StarKey
from .keywords import keyword_forms
from .model import ENROL_FLOW, INFO, LANGUAGE, WORKPLACE, Flow, FlowSet, Question
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
    # The workplace codes the caller looked up for this input (``workplace_code``): code ->
    # slug, or None when unknown or past the sender's daily allowance of tries.
    workplaces: Mapping[str, str | None] = field(default_factory=dict)
    # Free text passes through this before it is kept anywhere, session included: the caller
    # gives the identity module's phone-number scrubber.
    scrub: Callable[[str], str] = field(default=lambda text: text)
    channel: str = "sms"  # where this input came from; recorded with the pending question
    # Question types the channel cannot take (voice: ``text``, since a recording of a worker's
    # voice would identify them): such questions are skipped.
    unsupported: frozenset[str] = frozenset()
    # The licence version in force (WORKERVOICE_LICENCE_VERSION): an enrolled worker who agreed
    # to another one is asked for consent again at their next contact.
    licence: str = FIRST_LICENCE


def step(flows: FlowSet, session: Session | None, given: Input, ctx: Context) -> Step:
    """Apply one input from the worker; return the new session, the events and the outcome."""
    if not isinstance(given, Message | DialIn | NoInput | HangUp | ResumeChoice | StarKey):
        raise TypeError(f"not an engine input: {given!r}")
    session = session.copy() if session is not None else Session()
    run = _Run(flows, session, ctx)
    return run.handle(given)


def workplace_code(flows: FlowSet, session: Session | None, given: Input) -> str | None:
    """The workplace code this input gives, if the pending question asks for one: the caller
    resolves it (and counts the try) before the step, so the step itself does no I/O."""
    if session is None or session.flow is None or session.current is None:
        return None
    if not isinstance(given, Message):
        return None
    flow = flows.flows.get(session.flow)
    if flow is None or flow.version != session.version:
        return None
    question = next((q for q in flow.questions if q.id == session.current), None)
    if question is None or question.type != WORKPLACE:
        return None
    return code_digits(given.text)


NO_INPUT_REPEATS = 2  # voice: a question is asked again this often for silence, then skipped
FINISH = "@finish"  # Say.question of a flow's finish text


class _Run(Consent, Answers):
    """One message's walk through the flows: keywords, starting, asking, finishing. Taking the
    answer to the pending question is in answers.py; DELETE's confirmation and consent asked
    again for a new licence in consent.py."""

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
        lang = self.language
        self.events.append(
            Say(
                self.ctx.texts.service(lang, msgid).format(**values),
                msgid=msgid,
                language=lang,
                values=tuple((k, str(v)) for k, v in values.items()),
            )
        )

    def say_flow(self, msgid: str, flow: str, question: str) -> None:
        lang = self.language
        text = self.ctx.texts.flow(lang, msgid)
        self.events.append(Say(text, msgid=msgid, language=lang, flow=flow, question=question))

    def done(self, session: Session | None) -> Step:
        return Step(session, tuple(self.events), self.language)

    # -- entry ---------------------------------------------------------------------------
    def handle(self, given: Input) -> Step:
        if isinstance(given, HangUp):  # answers given are kept; the session waits for a resume
            return self.done(self.session)
        if isinstance(given, NoInput):
            self.drop_if_stale()
            self.no_input(given.repeats)
        elif isinstance(given, ResumeChoice):
            self.drop_if_stale()
            self.resume_choice(given.proceed)
        elif isinstance(given, StarKey):  # served before a new licence's consent, as STOP is
            self.drop_if_stale()
            self.star_menu()
        elif isinstance(given, DialIn):
            reserved = self.reserved(given.text)
            if reserved is not None:
                return reserved
            if self.consent_outdated():
                self.consent_again()
            else:
                self.dial_in(given.text)
        else:
            reserved = self.reserved(given.text)
            if reserved is not None:
                return reserved
            if self.consent_outdated():
                self.consent_again()
            elif self.session.idle:
                self.begin(clean(given.text).upper())
            else:
                self.answer(given.text)
        return self.done(self.session if self.session_alive else None)

    def reserved(self, text: str) -> Step | None:
        """STOP, HELP and LANG (and Twilio's opt-out words) in any language: their outcome, or
        None when the text is none of them. Stale flows are dropped on the way."""
        word = clean(text).upper()  # a keyword's form: every keyword matches it this way
        if word in words.OPT_OUT_WORDS or self.keywords.is_reserved(word, words.KEYWORD_STOP):
            self.events.append(OptedOut())
            self.say(words.STOPPED)
            return self.done(None)
        self.drop_if_stale()
        if self.keywords.is_reserved(word, words.KEYWORD_HELP):
            self.say(words.HELP)
            self.ask_current()
            return self.done(self.session)
        if self.keywords.is_reserved(word, words.KEYWORD_LANG) and self.change_language():
            return self.done(self.session)
        if self.keywords.is_reserved(word, words.KEYWORD_DELETE):
            self.confirm_erase()
            return self.done(self.session)
        return None

    def dial_in(self, text: str) -> None:
        """A new dialog: start a flow, or offer to resume one left unfinished with answers
        already given (else simply ask its pending question again)."""
        if self.session.current == STAR_PROMPT:  # the star key's menu: only on its own call
            self.session.current, self.session.resume = self.session.resume, None
        current = self.session.current
        if current is None:
            self.begin(clean(text).upper())
        elif current in PROMPTS or not self.session.answers:
            self.ask_current()
        else:
            self.session.resume, self.session.current = current, RESUME_PROMPT
            self.ask(RESUME_PROMPT)

    def resume_choice(self, proceed: bool) -> None:
        """The resume screen's answer: go on at the first unanswered question, or start the
        flow again from its first question (a new answer the same day replaces the old)."""
        if self.session.current != RESUME_PROMPT:  # nothing offered: an ordinary dial-in
            self.dial_in("")
            return
        self.session.current, self.session.resume = self.session.resume, None
        if proceed:
            self.ask_current()
            return
        self.session.current = None
        self.start(self.flow)

    def no_input(self, repeats: int) -> None:
        """Silence (voice): ask again up to NO_INPUT_REPEATS times, then go on without an
        answer. An enrolment question cannot be skipped: the language falls to the one spoken so
        far, and without consent or a workplace the call ends."""
        current = self.session.current
        if current is None:
            return
        if current == STAR_PROMPT:  # no key is "any other key": back to the question at once
            self.answer("")
            return
        if repeats < NO_INPUT_REPEATS:
            self.say(words.NOT_HEARD)
            self.ask(current)
            return
        if current == RESUME_PROMPT:
            self.resume_choice(True)
            return
        if current == ERASE_PROMPT:  # silence keeps the answers
            self.answer("")
            return
        if current == LANGUAGE_PROMPT:
            self.session.current, self.session.resume = self.session.resume, None
            self.ask_current()
            return
        question = self.flow.question(current)
        if question.type == LANGUAGE:
            self.profile.language = self.language
            self.session.answers[question.id] = self.language
            self.advance()
        elif self.flow.id == ENROL_FLOW:
            self.say(words.NO_INPUT)
            self.session_alive = False
        else:
            self.advance()

    def ask_current(self) -> None:
        """Put the pending question again, or move past it if this channel cannot take it."""
        current = self.session.current
        if current is None:
            return
        if current not in PROMPTS and not self.supported(self.flow.question(current)):
            self.advance()
            return
        self.ask(current)

    def supported(self, question: Question) -> bool:
        return question.type not in self.ctx.unsupported

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
        if self.session.current not in (LANGUAGE_PROMPT, ERASE_PROMPT, STAR_PROMPT):
            self.session.current = None
        self.session.resume = None

    def change_language(self) -> bool:
        """LANG: ask the language menu, then return to the pending question. False if LANG is
        better treated as an ordinary first message (an unknown worker: enrolment asks anyway)."""
        if not self.profile.enrolled and self.session.idle:
            return False
        if self.session.current == RESUME_PROMPT:  # after the language, the flow goes on
            self.session.current = self.session.resume
        if self.session.current == STAR_PROMPT:  # LANG leaves the star key's menu
            self.session.current, self.session.resume = self.session.resume, None
        if self.session.current not in (LANGUAGE_PROMPT, ERASE_PROMPT, None):
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
            if not self.applies(question) or not self.supported(question):
                continue
            if question.type == INFO:
                self.say_flow(question.ask, self.flow.id, question.id)
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
        renewed = flow.id == ENROL_FLOW and self.profile.enrolled  # consent asked again only
        if flow.finish and not renewed:
            self.say_flow(flow.finish, flow.id, FINISH)
        self.events.append(FlowFinished(flow.id))
        if flow.id == ENROL_FLOW:
            if self.profile.workplace is None:  # load_flows makes enrol ask for it
                raise RuntimeError("enrolment finished without a workplace")
            at = self.ctx.now.isoformat()
            if not renewed:
                self.profile.enrolled = True
                self.events.append(
                    Enrolled(language=self.language, workplace=self.profile.workplace, at=at)
                )
            if self.consent_question() is not None:
                self.profile.licence = self.ctx.licence
                self.events.append(
                    Consented(
                        licence=self.ctx.licence,
                        language=self.language,
                        channel=self.ctx.channel,
                        at=at,
                    )
                )
            self.start(self.flows.default)
            return
        self.session.flow = self.session.version = None
        self.session.plan, self.session.answers = [], {}

    # -- asking --------------------------------------------------------------------------
    def language_choices(self) -> list[str]:
        return languages_for(self.profile.country, self.ctx.texts.languages())

    def service_menu(
        self, flow: str, qid: str, msgid: str, options: tuple[str, ...], values: tuple[str, ...]
    ) -> None:
        """A question of the service's own, in its words (words.py), options numbered."""
        lang = self.language
        texts = self.ctx.texts
        self.events.append(
            Ask(
                flow=flow,
                question=qid,
                type="choice",
                text=texts.service(lang, msgid),
                options=tuple(texts.service(lang, w) for w in options),
                language=lang,
                values=values,
                msgid=msgid,
            )
        )

    def ask(self, qid: str | None) -> None:
        """Emit the prompt for a question (LANGUAGE_PROMPT: enrolment's language question;
        RESUME_PROMPT: the resume screen; ERASE_PROMPT: DELETE's confirmation; STAR_PROMPT: the
        star key's menu)."""
        if qid is None:
            return
        self.session.channel = self.ctx.channel
        lang = self.language
        if qid == RESUME_PROMPT:
            self.service_menu(self.flow.id, qid, words.RESUME, RESUME_OPTIONS, RESUME_VALUES)
            return
        if qid == ERASE_PROMPT:  # asked with or without a flow running: it belongs to none
            self.service_menu("", qid, words.ERASE_CONFIRM, ERASE_OPTIONS, ERASE_VALUES)
            return
        if qid == STAR_PROMPT:  # likewise
            self.service_menu("", qid, words.STAR_MENU, STAR_OPTIONS, STAR_VALUES)
            return
        if qid == LANGUAGE_PROMPT:
            flow_id = ENROL_FLOW
            prompt = next(q for q in self.flows.enrol.questions if q.type == LANGUAGE)
            question = replace(prompt, id=LANGUAGE_PROMPT)
            source = prompt.id
        else:
            flow_id, question = self.flow.id, self.flow.question(qid)
            source = question.id
        if question.type == LANGUAGE:
            values = tuple(self.language_choices())
            options = tuple(language_name(code) for code in values)
        else:
            values = tuple(o.value for o in question.options)
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
                values=values,
                source=source,
                msgid=question.ask,
            )
        )


__all__ = ["Context", "FINISH", "FIRST_LICENCE", "NO_INPUT_REPEATS", "step", "workplace_code"]
