"""How the engine's events are spoken on a voice channel (Twilio Voice, Africa's Talking Voice).

One place decides what a caller hears, so the voice adapters and ``workervoice audio synth``
agree by construction: ``utterances`` turns a turn's events into ``Utterance`` values (the text,
its language, and the name of the recorded clip that may replace it), and ``every_utterance``
lists every utterance a language can ever need, by running the same functions over every
question, option and service word.

Voice words its own way where SMS says "reply": "press 1 for Yes", "please press a key from 1
to 3", "key a number, then press the hash key". A language menu is spoken in each language by
its own voice ("Press 2 for English" in English, "বাংলা হলে ১ চাপুন" in Bangla).

Clips live under ``locales/<lang>/audio/`` (SPEC §5):

- ``<flow>/<question>``: a question's prompt, or an info question's text;
- ``<flow>/<question>.<value>``: "press N for <option>" for one option;
- ``<flow>/_finish``: a flow's finish text;
- ``_service/<hash>``: anything else (the service's words, language-menu and resume-screen
  options, number hints), named by the SHA-256 of its text so a changed text needs a new clip.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from .engine import words
from .engine.answers import (
    ERASE_OPTIONS,
    ERASE_PROMPT,
    ERASE_VALUES,
    RESUME_OPTIONS,
    RESUME_PROMPT,
    RESUME_VALUES,
    STAR_OPTIONS,
    STAR_PROMPT,
    STAR_VALUES,
)
from .engine.events import Ask, Event, Say
from .engine.model import INFO, LANGUAGE, NUMBER, WORKPLACE, FlowSet
from .engine.runtime import FINISH
from .engine.texts import Texts, language_name, reworded

SERVICE_CLIPS = "_service"
FINISH_CLIP = "_finish"
MAX_MENU_KEYS = 9  # a menu of up to 9 options takes one key press

# What voice says instead of the words SMS uses (words.py msgid -> voice msgid).
VOICE_WORDS = {
    words.CHOOSE_NUMBER: words.PRESS_NUMBER,
    words.NUMBER_RANGE: words.KEY_NUMBER_RANGE,
    words.NUMBER_ANY: words.KEY_NUMBER,
    **words.DIALOG_WORDS,
}
# Service words a voice call can say (the rest are SMS-only: TEXT_EMPTY has no voice use).
SPOKEN_SERVICE_WORDS = (
    words.HELP,
    words.STOPPED,
    words.DECLINED_AGAIN,
    words.CODE_UNKNOWN,
    words.CODE_FAILED_AGAIN,
    words.LANGUAGE_SET,
    words.NO_INPUT,
    words.NOT_HEARD,
    words.KEY_NUMBER,
    words.KEY_CODE,
    words.NUMBER_WITHHELD,  # said in English: a withheld caller's language is unknown
    words.ERASED,  # a DELETE sent by text may be confirmed in a call: its pending question
    words.ERASE_KEPT,
    words.STAR_HINT,  # the star key's menu (STAR_MENU) is asked below, with DELETE's
)


@dataclass(frozen=True)
class Utterance:
    """Something the caller hears: ``text`` in ``language``, or the clip recorded for it."""

    text: str
    language: str
    clip: str  # under locales/<language>/audio/, without the extension


def service_clip(text: str) -> str:
    return f"{SERVICE_CLIPS}/{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def utterances(events: Iterable[Event], texts: Texts) -> list[Utterance]:
    """What a turn's events sound like, in order."""
    said: list[Utterance] = []
    for event in events:
        if isinstance(event, Say):
            said.append(say(event, texts))
        elif isinstance(event, Ask):
            said.extend(ask(event, texts))
    return said


def say(event: Say, texts: Texts) -> Utterance:
    lang = event.language or "en"
    if not event.service:
        name = FINISH_CLIP if event.question == FINISH else event.question
        return Utterance(event.text, lang, f"{event.flow}/{name}")
    text = reworded(event, texts, VOICE_WORDS)
    return Utterance(text, lang, service_clip(text))


def ask(event: Ask, texts: Texts) -> list[Utterance]:
    """The prompt, then "press N for ..." for each option, or how to key a number."""
    lang = event.language or "en"
    prompt = f"{event.flow}/{event.source}" if event.source else service_clip(event.text)
    said = [Utterance(event.text, lang, prompt)]
    for key, (option, value) in enumerate(zip(event.options, event.values, strict=False), 1):
        said.append(press(event, key, option, value, texts))
    if event.type == NUMBER:
        said.append(number_hint(event, lang, texts))
    elif event.type == WORKPLACE:
        text = texts.service(lang, words.KEY_CODE)
        said.append(Utterance(text, lang, service_clip(text)))
    return said


def press(event: Ask, key: int, option: str, value: str, texts: Texts) -> Utterance:
    """ "Press <key> for <option>": a language menu's option in its own language."""
    lang = value if event.type == LANGUAGE else (event.language or "en")
    text = texts.service(lang, words.PRESS_FOR).format(key=key, option=option)
    if event.type == LANGUAGE or event.question == RESUME_PROMPT or not event.source:
        return Utterance(text, lang, service_clip(text))
    return Utterance(text, lang, f"{event.flow}/{event.source}.{value}")


def number_hint(event: Ask, lang: str, texts: Texts) -> Utterance:
    if event.min is not None and event.max is not None:
        text = texts.service(lang, words.KEY_NUMBER_RANGE).format(
            min=_number(event.min), max=_number(event.max)
        )
    else:
        text = texts.service(lang, words.KEY_NUMBER)
    return Utterance(text, lang, service_clip(text))


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def keys_for(event: Ask) -> int | None:
    """How many keys a menu answer takes (1 for up to 9 options); None: keyed, ended by #."""
    if event.options and len(event.options) <= MAX_MENU_KEYS:
        return 1
    return None


# -- every utterance of a language, for audio synthesis and lint -------------------------------


def every_utterance(flows: FlowSet, texts: Texts, language: str) -> list[Utterance]:
    """Every utterance a caller whose language is ``language`` may hear in that language, each
    clip once: the same functions as a live call, run over every question of every flow."""
    seen: dict[str, Utterance] = {}
    for item in _every(flows, texts, language):
        if item.language == language:
            seen.setdefault(item.clip, item)
    return list(seen.values())


def _every(flows: FlowSet, texts: Texts, lang: str) -> Iterator[Utterance]:
    codes = texts.languages()
    for flow in flows.flows.values():
        for question in flow.questions:
            if question.type == LANGUAGE:
                # every position each language can take on a menu (the order is per country)
                for code in codes:
                    for key in range(1, len(codes) + 1):
                        menu = Ask(flow.id, question.id, LANGUAGE, "", source=question.id)
                        yield press(menu, key, language_name(code), code, texts)
                yield from ask(_ask(flow.id, question, lang, texts), texts)[:1]
                continue
            if question.options or question.type in (NUMBER, WORKPLACE):
                yield from ask(_ask(flow.id, question, lang, texts), texts)
            elif question.type == INFO:  # said; text questions are never asked on voice
                yield Utterance(texts.flow(lang, question.ask), lang, f"{flow.id}/{question.id}")
        if flow.finish:
            yield Utterance(texts.flow(lang, flow.finish), lang, f"{flow.id}/{FINISH_CLIP}")
        resume = (RESUME_PROMPT, words.RESUME, RESUME_OPTIONS, RESUME_VALUES)
        yield from ask(_service_menu(flow.id, *resume, lang, texts), texts)
    erase = (ERASE_PROMPT, words.ERASE_CONFIRM, ERASE_OPTIONS, ERASE_VALUES)
    yield from ask(_service_menu("", *erase, lang, texts), texts)
    star = (STAR_PROMPT, words.STAR_MENU, STAR_OPTIONS, STAR_VALUES)
    yield from ask(_service_menu("", *star, lang, texts), texts)
    for msgid in SPOKEN_SERVICE_WORDS:
        text = texts.service(lang, msgid)
        yield Utterance(text, lang, service_clip(text))
    most = max([len(codes)] + [len(q.options) for f in flows.flows.values() for q in f.questions])
    for count in range(2, most + 1):
        yield say(
            Say("", msgid=words.CHOOSE_NUMBER, language=lang, values=(("count", str(count)),)),
            texts,
        )


def _service_menu(
    flow_id: str,
    qid: str,
    msgid: str,
    options: tuple[str, ...],
    values: tuple[str, ...],
    lang: str,
    texts: Texts,
) -> Ask:
    """One of the service's own menus (the resume screen, DELETE's confirmation, the star key's
    menu) as asked."""
    return Ask(
        flow_id,
        qid,
        "choice",
        texts.service(lang, msgid),
        options=tuple(texts.service(lang, w) for w in options),
        language=lang,
        values=values,
    )


def _ask(flow_id: str, question, lang: str, texts: Texts) -> Ask:
    return Ask(
        flow=flow_id,
        question=question.id,
        type=question.type,
        text=texts.flow(lang, question.ask),
        options=tuple(texts.flow(lang, o.text) for o in question.options),
        min=question.min,
        max=question.max,
        language=lang,
        values=tuple(o.value for o in question.options),
        source=question.id,
        msgid=question.ask,
    )
