"""DELETE's confirmation and consent asked again for a new licence version. Pure.

A mixin of the run in runtime.py, like answers.py. DELETE asks ``ERASE_PROMPT`` (1. Yes /
2. No) with the pending question kept aside; its first option erases (OptedOut and Erased),
anything else keeps everything and asks the pending question again. On a call, where nothing
can be typed, the star key (``inputs.StarKey``) asks ``STAR_PROMPT`` the same way: its first
option does what STOP does, its second asks DELETE's confirmation, any other key goes back to
the pending question as it was. An enrolled worker whose
profile carries another licence version than ``Context.licence`` is put enrolment's consent
question alone at their next contact (``consent_outdated`` / ``consent_again``); the run's
``finish`` records the agreement (Consented) and starts the default flow.
"""

from __future__ import annotations

from . import words
from .answers import (
    ERASE_OPTIONS,
    ERASE_PROMPT,
    LANGUAGE_PROMPT,
    PROMPTS,
    RESUME_PROMPT,
    STAR_OPTIONS,
    STAR_PROMPT,
)
from .events import Erased, OptedOut
from .model import CONSENT, ENROL_FLOW, Question
from .parsing import pick_option
from .parts import RunParts

FIRST_LICENCE = "1"  # what a profile kept before licence versions were recorded agreed to


class Consent(RunParts):
    """DELETE and licence versions for a run (runtime._Run), which provides what RunParts
    declares."""

    def confirm_erase(self) -> None:
        """DELETE: ask for a confirmation first (``answer_erase``), then return to the
        pending question if the worker keeps their answers. Anyone may ask, enrolled or not:
        a worker who sent STOP before still has answers under their pseudonym. From LANG's
        menu or the resume screen, it returns to the flow's question they stood before."""
        current = self.session.current
        if current in (LANGUAGE_PROMPT, RESUME_PROMPT, STAR_PROMPT):
            current = self.session.resume
        if self.session.current != ERASE_PROMPT:
            self.session.resume = current
        self.session.current = ERASE_PROMPT
        self.ask(ERASE_PROMPT)

    # -- the star key (voice) ---------------------------------------------------------------
    def star_menu(self) -> None:
        """The star key: put its menu (``answer_star``), the pending question kept aside (from
        LANG's menu, the resume screen or DELETE's confirmation, the flow's question they stood
        before). The star key on its own menu is "any other key": back to the question."""
        current = self.session.current
        if current == STAR_PROMPT:
            self.leave_star_menu()
            return
        if current in (LANGUAGE_PROMPT, RESUME_PROMPT, ERASE_PROMPT):
            current = self.session.resume
        self.session.resume, self.session.current = current, STAR_PROMPT
        self.ask(STAR_PROMPT)

    def answer_star(self, text: str) -> None:
        """The star key's menu: 1 forgets the worker as STOP does, 2 asks DELETE's confirmation
        (the second step: nothing is erased without it), anything else (another key, silence)
        asks the pending question again, nothing forgotten."""
        lang = self.language
        names = [(self.ctx.texts.service(lang, w), w) for w in STAR_OPTIONS]
        index = pick_option(text, names)
        if index == 0:
            self.events.append(OptedOut())
            self.say(words.STOPPED)
            self.session_alive = False
        elif index == 1:
            self.confirm_erase()
        else:
            self.leave_star_menu()

    def leave_star_menu(self) -> None:
        """Back from the star key's menu to the question pending before it, as it was."""
        self.session.current, self.session.resume = self.session.resume, None
        self.ask_current()

    # -- consent to a new licence -----------------------------------------------------------
    def consent_question(self) -> Question | None:
        return next((q for q in self.flows.enrol.questions if q.type == CONSENT), None)

    def consent_outdated(self) -> bool:
        """An enrolled worker who agreed to another licence version than the one in force, and
        is not being asked already."""
        if not self.profile.enrolled or self.session.current in PROMPTS:
            return False  # the service's own question (DELETE's, LANG's) is answered first
        if (self.profile.licence or FIRST_LICENCE) == self.ctx.licence:
            return False
        question = self.consent_question()
        if question is None:  # an enrolment without consent has nothing to ask again
            return False
        asking = self.session.flow == ENROL_FLOW and self.session.current == question.id
        return not asking

    def consent_again(self) -> None:
        """Put enrolment's consent question alone; the flow in progress (its answers already
        recorded) is left. Agreeing starts the default flow (``finish``); declining forgets the
        worker as STOP does (answers.answer_consent)."""
        question = self.consent_question()
        assert question is not None
        enrol = self.flows.enrol
        self.session.flow, self.session.version = enrol.id, enrol.version
        self.session.answers, self.session.tries, self.session.resume = {}, 0, None
        self.session.current = None
        self.session.plan = [question.id]
        self.advance()

    def answer_erase(self, text: str) -> None:
        """DELETE's confirmation: its first option (by number or text, "1", "Yes", "হ্যাঁ")
        erases; anything else keeps everything and goes back to the question pending before."""
        lang = self.language
        names = [(self.ctx.texts.service(lang, w), w) for w in ERASE_OPTIONS]
        if pick_option(text, names) == 0:
            self.events.extend((OptedOut(), Erased()))
            self.say(words.ERASED)
            self.session_alive = False
            return
        self.say(words.ERASE_KEPT)
        self.session.current, self.session.resume = self.session.resume, None
        if self.session.current is not None:
            self.ask(self.session.current)
