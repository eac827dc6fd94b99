"""Taking an answer to the pending question: one handler per question type. Pure.

A mixin of the run in runtime.py, which walks the flow: a handler reads what the worker typed,
then either records the answer and moves on (``advance``) or says what was wrong and asks again.
"""

from __future__ import annotations

from . import words
from .events import (
    AnswerRecorded,
    ContactAgreed,
    ContactDeclined,
    Declined,
    LanguageChanged,
    OptedOut,
)
from .model import (
    CHOICE,
    CONSENT,
    CONTACT,
    ENROL_FLOW,
    LANGUAGE,
    NUMBER,
    TEXT,
    WORKPLACE,
    Question,
)
from .parsing import as_number_text, ascii_digits, parse_number, pick_option
from .parts import RunParts
from .texts import language_name

WORKPLACE_TRIES = 3
LANGUAGE_PROMPT = "@language"  # pseudo question used by LANG outside enrolment
RESUME_PROMPT = "@resume"  # pseudo question: the resume screen (1. Continue / 2. Start again)
RESUME_OPTIONS = (words.CONTINUE, words.START_AGAIN)
RESUME_VALUES = ("continue", "restart")
ERASE_PROMPT = "@erase"  # pseudo question: DELETE's confirmation (1. Yes / 2. No)
ERASE_OPTIONS = (words.YES, words.NO)
ERASE_VALUES = ("erase", "keep")
STAR_PROMPT = "@star"  # pseudo question: the star key's menu on voice (1. Stop / 2. Erase)
STAR_OPTIONS = (words.STAR_STOP, words.STAR_ERASE)
STAR_VALUES = ("stop", "erase")
# The service's own menus: their options (words.py msgids), by pseudo question.
SERVICE_MENUS = {
    RESUME_PROMPT: RESUME_OPTIONS,
    ERASE_PROMPT: ERASE_OPTIONS,
    STAR_PROMPT: STAR_OPTIONS,
}
# the service's own pending questions
PROMPTS = (LANGUAGE_PROMPT, RESUME_PROMPT, ERASE_PROMPT, STAR_PROMPT)


def code_digits(text: str) -> str | None:
    """A workplace code as typed (spaces allowed, any script's digits): 4 to 8 ASCII digits, or
    None when the text cannot be one (SPEC §4)."""
    code = ascii_digits((text or "").replace(" ", ""))
    return code if code is not None and 4 <= len(code) <= 8 else None


class Answers(RunParts):
    """The answer handlers of a run (runtime._Run), which provides what RunParts declares."""

    def answer(self, text: str) -> None:
        qid = self.session.current
        if qid == LANGUAGE_PROMPT:
            self.answer_language_change(text)
            return
        if qid == RESUME_PROMPT:
            self.answer_resume(text)
            return
        if qid == ERASE_PROMPT:
            self.answer_erase(text)
            return
        if qid == STAR_PROMPT:
            self.answer_star(text)
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
            CONTACT: self.answer_contact,
        }[question.type]
        handler(question, text)

    def answer_resume(self, text: str) -> None:
        """The resume screen, answered by its option number or text."""
        lang = self.language
        names = [(self.ctx.texts.service(lang, w), w) for w in RESUME_OPTIONS]
        index = pick_option(text, names)
        if index is None:
            self.retry(RESUME_PROMPT, words.CHOOSE_NUMBER, count=len(names))
            return
        self.resume_choice(index == 0)

    def retry(self, question_id: str, msgid: str, **values: object) -> None:
        self.say(msgid, **values)
        self.ask(question_id)

    def choose(self, question: Question, text: str) -> str | None:
        lang = self.language
        # The option's number or its own text (translated, or the source text): never its
        # stored value, a code the worker cannot see ("hi" is not Hindi's menu entry).
        names = [(self.ctx.texts.flow(lang, o.text), o.text) for o in question.options]
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
        if number is None or not question.accepts(number):
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
        index = pick_option(text, [(language_name(c),) for c in codes])
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
            self.events.append(LanguageChanged(language=code, at=self.ctx.now.isoformat()))
        self.say(words.LANGUAGE_SET)
        self.session.current, self.session.resume = self.session.resume, None
        if self.session.current is not None:
            self.ask(self.session.current)

    def answer_consent(self, question: Question, text: str) -> None:
        value = self.choose(question, text)
        if value is None:
            return
        if value == "decline":
            if self.profile.enrolled:  # a new licence declined: forgotten as by STOP
                self.events.append(OptedOut())
            self.events.append(Declined())
            self.say(words.DECLINED)
            self.session_alive = False
            return
        self.session.answers[question.id] = value
        self.advance()

    def answer_contact(self, question: Question, text: str) -> None:
        """Whether the worker may be contacted later: not an answer to any figure, an event for
        the contact vault (kept on agree, deleted on decline)."""
        value = self.choose(question, text)
        if value is None:
            return
        at = self.ctx.now.isoformat()
        if value == "agree":
            self.events.append(
                ContactAgreed(question=question.id, purposes=question.purposes, at=at)
            )
        else:
            self.events.append(ContactDeclined(question=question.id, at=at))
        self.session.answers[question.id] = value
        self.advance()

    def answer_workplace(self, question: Question, text: str) -> None:
        code = code_digits(text)
        slug = self.ctx.workplaces.get(code) if code is not None else None
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
