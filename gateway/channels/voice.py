"""What a voice call's request means for the engine, and what the caller hears back, for every
voice provider (Twilio Voice, Africa's Talking Voice). The adapters parse and authenticate a
request, read it into a ``Call`` here, and render a ``Prompt`` in their own XML.

Every document an adapter renders sends the caller's next request to
``WORKERVOICE_PUBLIC_URL + path + ?n=<turn>``: the turn number counts the call's requests, so
``<call id>:<n>`` is the message id a provider's retry of a turn repeats (answered from the reply
cache, applied once). The call's own state (``dialog.state``, kept in Redis per call) holds the
turn expected next, the question the call last put, how often the caller was silent on it, and
whether the call has ended (a provider may report the end before the call's last answer).

Keys holding ``*`` are never an answer: at any question they are the star key (``StarKey``),
whose menu stops or erases as STOP and DELETE do (gateway/engine/consent.py). A call tells the
caller once ("Press the star key at any time to stop.", ``with_star_hint``).

A caller whose number is withheld cannot be pseudonymised: they are asked, in English (their
language is unknown), to call again with their number shown, and nothing is kept.

A language with neither a recording of a prompt nor a provider voice (Swahili without audio)
is said in English from the source text, with a warning naming the clip (never the caller).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlencode

from babel import Locale

from .. import speech
from ..audio import AudioLibrary
from ..conversation import Inbound, Turned
from ..engine import words
from ..engine.answers import SERVICE_MENUS
from ..engine.definition import FlowSet
from ..engine.events import Ask, Enrolled, Event, FlowFinished, Say, Step
from ..engine.inputs import DialIn, HangUp, Message, NoInput, StarKey
from ..engine.model import ENROL_FLOW, LANGUAGE, NUMBER, TEXT, WORKPLACE
from ..engine.session import Session
from ..engine.texts import SOURCE_LANGUAGE, Texts
from ..services import Services
from ..sessions import Dialog
from . import BadRequest

log = logging.getLogger(__name__)

DIAL_IN, KEYS, SILENCE, HANG_UP = "dial-in", "keys", "silence", "hang-up"
MAX_TURN = 9999  # no call has this many requests: a larger n is not one we rendered
MAX_DIGITS = 64  # longer than any answer a caller can key (a workplace code is 4 to 8 digits)
DIGITS = frozenset("0123456789*#")
MENU_TIMEOUT = 7  # seconds to press one key after the prompt
KEYED_TIMEOUT = 12  # seconds to key a number or a code, ended by #
END_KEY = "#"
STAR_KEY = "*"  # at any question: the star key's menu (stop, or erase), never an answer
ENDED = "ended"  # dialog.state: the provider reported the call's end
# What a withheld caller's number reads as (PROVIDERS.md §2.1; "" where AT leaves it empty).
WITHHELD = frozenset({"", "anonymous", "unknown", "restricted", "private", "withheld"})


# -- reading a request -------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One request of a call, whatever the provider: what the caller did on which turn."""

    id: str  # the provider's call id (CallSid, AT sessionId)
    turn: int  # n from the URL; 0 for the call's first request
    kind: str  # DIAL_IN | KEYS | SILENCE | HANG_UP
    digits: str = ""
    ended: bool = False  # keys reported together with the call's end (its last answer)

    @property
    def message_id(self) -> str:
        """What a provider's retry of this request repeats: the call and the turn (a hang-up
        may come on any turn, or on none: it is one per call)."""
        return f"{self.id}:end" if self.kind == HANG_UP else f"{self.id}:{self.turn}"

    @property
    def first(self) -> bool:
        return self.kind == DIAL_IN


def read_call(
    call_id: str, args: Mapping[str, str], digits: str | None, ended: bool, field: str
) -> Call:
    """The request read from its URL's ``n`` / ``noinput`` and the keys pressed (``field``
    names the provider's digits field); BadRequest if any of them is not one we could send.
    Keys on a turn reported with the call's end are its last answer, not a hang-up."""
    turn, silent = _turn(args)
    keyed = _digits(digits, field)
    if ended:
        if turn and keyed and not silent:
            return Call(call_id, turn, KEYS, keyed, ended=True)
        return Call(call_id, turn, HANG_UP)
    if turn == 0:
        if silent:
            raise BadRequest("'noinput' without a turn number")
        return Call(call_id, 0, DIAL_IN)
    if keyed and not silent:
        return Call(call_id, turn, KEYS, keyed)
    return Call(call_id, turn, SILENCE)


def _turn(args: Mapping[str, str]) -> tuple[int, bool]:
    raw = args.get("n")
    silent = args.get("noinput")
    if silent is not None and silent != "1":
        raise BadRequest("malformed parameter 'noinput'")
    if raw is None:
        return 0, silent is not None
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_TURN:
        raise BadRequest("malformed parameter 'n'")
    return int(raw), silent is not None


def _digits(value: str | None, field: str) -> str:
    """The keys pressed, without the key that ended them: Twilio leaves ``#`` out, and whether
    Africa's Talking does is unconfirmed (PROVIDERS.md §6.2), so a trailing ``#`` goes."""
    if not value:
        return ""
    if len(value) > MAX_DIGITS or not set(value) <= DIGITS:
        raise BadRequest(f"malformed field '{field}'")
    return value.removesuffix(END_KEY)


def missed_call(services: Services, provider: str, caller: str, called: str) -> bool:
    """True when ``called`` is a workplace's callback number: the call is to be rejected
    unanswered, and gateway/callbacks.py has queued the call back to the worker."""
    from .. import callbacks

    return callbacks.missed_call(services, provider, caller, called)


def withheld(address: str) -> bool:
    """True for a caller whose number the network withholds, or a Twilio client (``client:``):
    there is no number to pseudonymise, so no worker to speak with."""
    value = address.strip().lower()
    return value in WITHHELD or value.startswith("client:")


# -- what the caller hears ---------------------------------------------------------------------


@dataclass(frozen=True)
class Spoken:
    """One utterance, its clip's URL when there is a recording, and the English source text to
    say where the language has neither a recording nor a voice."""

    said: speech.Utterance
    url: str | None
    english: str

    def fallback(self) -> str:
        """The English source text, logged once per clip and process: the caller hears
        English, not their language, until the clip is recorded or synthesised."""
        where = (self.said.language, self.said.clip)
        with _warned_lock:
            first = where not in _warned
            _warned.add(where)
        if first:
            log.warning(
                "%s/%s cannot be heard in its language (no recording to play, no voice): "
                "saying the English source text (run 'workervoice audio synth %s')",
                self.said.language,
                self.said.clip,
                self.said.language,
            )
        return self.english


# Clips already warned about: bounded by the flows' and the service's texts.
_warned: set[tuple[str, str]] = set()
_warned_lock = threading.Lock()


@dataclass(frozen=True)
class Prompt:
    """What one response says, what it waits on (None: the call ends after it), where the
    caller's keys go and where silence goes."""

    said: tuple[Spoken, ...]
    waiting: Ask | None
    action: str
    no_input: str

    @property
    def one_key(self) -> bool:
        """A menu answered by one key press; else a number or code ended by #."""
        return self.waiting is not None and speech.keys_for(self.waiting) == 1

    @property
    def timeout(self) -> int:
        return MENU_TIMEOUT if self.one_key else KEYED_TIMEOUT


def spoken(
    events: Iterable[Event], texts: Texts, flows: FlowSet | None, audio: AudioLibrary
) -> tuple[Spoken, ...]:
    """The turn's events as the caller hears them, in order (gateway/speech.py decides the
    words), each with its recording's URL and its English source text."""
    said: list[Spoken] = []
    for event in events:
        if isinstance(event, Say):
            pairs = [(speech.say(event, texts), _english_say(event, texts))]
        elif isinstance(event, Ask):
            said_en = _english_ask(event, texts, flows)
            pairs = list(zip(speech.ask(event, texts), said_en, strict=False))
        else:
            continue
        for utterance, english in pairs:
            if utterance.language == SOURCE_LANGUAGE:
                english = utterance.text
            said.append(Spoken(utterance, audio.url(utterance), english))
    return tuple(said)


def _english_say(event: Say, texts: Texts) -> str:
    if not event.msgid:
        return event.text
    if not event.service:
        return texts.flow(SOURCE_LANGUAGE, event.msgid)
    try:
        english = texts.service(SOURCE_LANGUAGE, event.msgid).format(**dict(event.values))
        return speech.say(replace(event, text=english, language=SOURCE_LANGUAGE), texts).text
    except (KeyError, IndexError, ValueError):  # a msgid whose placeholders were not given
        return event.text


def _english_ask(event: Ask, texts: Texts, flows: FlowSet | None) -> list[str]:
    """The English of speech.ask's utterances, one for one: prompt, options, keying hint."""
    if not event.msgid:
        prompt = event.text
    elif event.source:
        prompt = texts.flow(SOURCE_LANGUAGE, event.msgid)
    else:
        prompt = texts.service(SOURCE_LANGUAGE, event.msgid)
    press = texts.service(SOURCE_LANGUAGE, words.PRESS_FOR)
    options = _english_options(event, texts, flows)
    english = [prompt]
    english += [press.format(key=k, option=o) for k, o in enumerate(options, 1)]
    if event.type == NUMBER:
        english.append(speech.number_hint(event, SOURCE_LANGUAGE, texts).text)
    elif event.type == WORKPLACE:
        english.append(texts.service(SOURCE_LANGUAGE, words.KEY_CODE))
    return english


def _english_options(event: Ask, texts: Texts, flows: FlowSet | None) -> list[str]:
    count = min(len(event.options), len(event.values))
    if event.type == LANGUAGE:
        return [_english_name(code) for code in event.values[:count]]
    if event.question in SERVICE_MENUS:  # the resume screen, DELETE's, the star key's menu
        return [texts.service(SOURCE_LANGUAGE, w) for w in SERVICE_MENUS[event.question]][:count]
    flow = flows.flows.get(event.flow) if flows is not None else None
    question = next((q for q in flow.questions if q.id == event.source), None) if flow else None
    if question is None or len(question.options) < count:
        return list(event.options[:count])
    return [texts.flow(SOURCE_LANGUAGE, o.text) for o in question.options[:count]]


def _english_name(code: str) -> str:
    try:
        return Locale.parse(code).get_display_name(SOURCE_LANGUAGE) or code
    except (ValueError, LookupError):
        return code


def to_withheld(services: Services, call: Call) -> Prompt | None:
    """What a withheld caller hears (None for the call's end: nothing); no engine step, nothing
    kept. We gave such a call no turns: a later one is a BadRequest."""
    if call.kind == HANG_UP:
        return None
    if not call.first:
        raise BadRequest(f"turn {call.turn} is not the call's current turn")
    log.info("a withheld number called: asked to call again with the number shown")
    texts = services.registry.current()[1]
    text = texts.service(SOURCE_LANGUAGE, words.NUMBER_WITHHELD)
    said = Say(text, msgid=words.NUMBER_WITHHELD, language=SOURCE_LANGUAGE)
    return Prompt(spoken([said], texts, None, services.audio), None, "", "")


# -- the turn ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Link:
    """The URL a rendered document sends the caller's next request to."""

    endpoint: str  # WORKERVOICE_PUBLIC_URL + the webhook's path
    query: tuple[tuple[str, str], ...] = ()  # after n (AT: the webhook token)

    def url(self, turn: int, no_input: bool = False) -> str:
        params = [("n", str(turn)), *self.query]
        if no_input:
            params.append(("noinput", "1"))
        return f"{self.endpoint}?{urlencode(params)}"


@dataclass(frozen=True)
class VoiceTurn:
    """One request of a call, for gateway/conversation.handle.

    ``read`` checks the request is the turn the call expects and makes the engine input: the
    call's first request is a dial-in (not an answer: the engine offers to resume an unfinished
    flow), keys answer the question this call put, silence counts towards asking it again, a
    hang-up ends the dialog (answers given are kept) and marks the call ended: after that only
    the answer to the question put is applied (a provider may report the end first), and
    nothing is said. ``render`` moves the turn counter on and hands the provider's renderer
    what to say.
    """

    call: Call
    link: Link
    speak: Callable[[Prompt], str]  # the provider's XML for a prompt
    hung_up: str  # the provider's answer to a hang-up
    audio: AudioLibrary
    flows: FlowSet | None = None  # for the English source of option texts
    unsupported: frozenset[str] = frozenset({TEXT})  # a recording of a voice would identify

    @property
    def text(self) -> str:
        """The keys pressed ('' for anything else)."""
        return self.call.digits

    def read(self, dialog: Dialog, session: Session) -> Turned:
        state = dialog.state
        if self.call.kind == HANG_UP:
            state[ENDED] = True  # the dialog's state is kept: a late last answer still counts
            return Turned(HangUp())
        if self.call.turn != _count(state, "n"):
            raise BadRequest(f"turn {self.call.turn} is not the call's current turn")
        pending = state.get("asked") is not None and state.get("asked") == session.current
        if self.call.ended:
            state[ENDED] = True
        if state.get(ENDED) is True:
            # The caller is gone: only an answer to the question put is still applied (the
            # star key's menu needs someone to hear it).
            if self.call.kind == KEYS and pending and STAR_KEY not in self.call.digits:
                return Turned(Message(self.call.digits))
            return Turned(reply=self.hung_up)
        if self.call.kind == DIAL_IN:
            return Turned(DialIn())
        if not pending:
            # The question this call put is no longer pending (answered on another channel):
            # keys or silence cannot answer what the caller did not hear; begin afresh.
            return Turned(DialIn())
        if self.call.kind == KEYS:
            if STAR_KEY in self.call.digits:  # on a keyed question too: "12*" is no answer
                return Turned(StarKey())
            return Turned(Message(self.call.digits))
        repeats = _count(state, "silences")
        state["silences"] = repeats + 1
        return Turned(NoInput(repeats))

    def render(self, step: Step, dialog: Dialog, texts: Texts) -> str:
        if self.call.kind == HANG_UP:
            return self.hung_up
        turn = self.call.turn + 1
        remember(dialog.state, turn, step.waiting)
        if dialog.state.get(ENDED) is True:  # a late last answer: no one is there to hear
            return self.hung_up
        events = with_star_hint(step, self.call.kind == DIAL_IN, texts)
        prompt = Prompt(
            spoken(events, texts, self.flows, self.audio),
            step.waiting,
            self.link.url(turn),
            self.link.url(turn, no_input=True),
        )
        return self.speak(prompt)


def with_star_hint(step: Step, first: bool, texts: Texts) -> tuple[Event, ...]:
    """The turn's events with "Press the star key at any time to stop." where a caller first
    needs it: first on a call's first turn for an enrolled worker, and on the turn that enrols a
    new one, right after enrolment's finish text. Only when the call goes on (a question waits);
    in the worker's language, which an enrolling call has just chosen."""
    events = step.events
    if step.waiting is None or step.session is None:
        return events
    lang = step.language or SOURCE_LANGUAGE
    hint = Say(texts.service(lang, words.STAR_HINT), msgid=words.STAR_HINT, language=lang)
    if any(isinstance(e, Enrolled) for e in events):
        enrolment = (i for i, e in enumerate(events) if _finishes(e, ENROL_FLOW))
        done = next(enrolment, -1)
        return (*events[: done + 1], hint, *events[done + 1 :])
    if first and step.session.profile.enrolled:
        return (hint, *events)
    return events


def _finishes(event: Event, flow: str) -> bool:
    return isinstance(event, FlowFinished) and event.flow == flow


def conversation(
    services: Services,
    provider: str,
    caller: str,
    call: Call,
    link: Link,
    speak: Callable[[Prompt], str],
    hung_up: str,
) -> tuple[Inbound, VoiceTurn]:
    """What an adapter hands to gateway/conversation.handle for one request of a call: the
    caller (a worker's number), the call's id and turn, and how the provider hears a prompt."""
    flows = services.registry.current()[0]
    turn = VoiceTurn(call, link, speak, hung_up, services.audio, flows)
    return Inbound(provider, "voice", caller, call.message_id, dialog=call.id), turn


def remember(state: dict[str, Any], turn: int, waiting: Ask | None) -> None:
    """The call's state after a response: the turn expected next, the question put, and the
    silences on it (counted again from 0 when the question changes)."""
    state["n"] = turn
    asked = waiting.question if waiting is not None else None
    if state.get("asked") != asked:
        state["asked"] = asked
        state["silences"] = 0


def _count(state: Mapping[str, Any], name: str) -> int:
    value = state.get(name, 0)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


SENTENCE_ENDS = (".", "?", "!", "\u0964")  # \u0964: the danda of Bangla and Hindi


def joined(texts: Iterable[str]) -> str:
    """Several utterances as one text to say (AT nests one <Say>), each a sentence, so the
    voice pauses between "Press 1 for Yes" and "Press 2 for No"."""
    return " ".join(t if t.rstrip().endswith(SENTENCE_ENDS) else f"{t.rstrip()}." for t in texts)
