"""What a USSD session shows and what its cumulative text means, for any USSD provider. Pure:
no request, no Redis; gateway/channels/at_ussd.py keeps the state between requests.

Screens (SPEC §4): every ``Say`` and ``Ask`` of a step in order, one line each, options numbered
``1. Yes`` as on SMS; split into pages by gateway/engine/screens.py (what lint measures too),
with the paging labels in the step's language. ``answer_page`` is the first page from which the
pending question can be answered: the first showing one of its options, or, for a question
without options (a number, a text, a workplace code), the one holding the end of its prompt.

The cumulative text (PROVIDERS.md §4.1): every input of the session so far, joined by ``*``.
Only the newest input is applied, however the text grew since the request before:

- an empty text is a dial-in (a new session, or one begun again under the same id);
- a text that extends the previous one (the previous text, a ``*``, then one or more parts)
  applies only its last part; several new parts at once are most likely one input holding a
  typed ``*``, which cannot be told apart: its last part is taken, as from any text;
- a text that does not extend the previous one (the previous text is unknown or different) is
  read afresh: its last part is the newest input, and the count of parts consumed is re-based on
  it; since the worker did not answer the screen last shown, ``98``/``00`` in it are ordinary
  input, not paging. A retry of an older request never gets this far (the reply cache answers
  it, for 24 hours);
- the same text as the previous request is a retry: it is answered with the same reply;
- empty parts (``1*``, ``1**2``) are empty inputs, which the engine asks again for.

Only a digest of the previous text is kept (salted by the session id, which is itself kept only
as a digest), since the text holds every answer typed, free text included.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..engine import words
from ..engine.events import Ask, Event, Say, Step
from ..engine.screens import Layout, Line, layout, prompt_lines, prose
from ..engine.texts import Texts, reworded

SEPARATOR = "*"
PLAIN_ID_TEXT = 40  # a text up to this long goes into the message id as it is, longer hashed


def lines(events: Iterable[Event], texts: Texts) -> list[Line]:
    """The content of a step's screen: messages and prompts in order."""
    content: list[Line] = []
    for event in events:
        if isinstance(event, Say):
            # no "send any message" where none is sent
            content += prose(reworded(event, texts, words.DIALOG_WORDS))
        elif isinstance(event, Ask):
            content += prompt_lines(event.text, event.options)
    return content


@dataclass(frozen=True)
class Screens:
    """A step's outcome as USSD shows it: its pages, and the first page from which the pending
    question can be answered (``len(pages)`` when nothing is pending: the outcome ends)."""

    pages: list[str]
    answer_page: int


def screens(step: Step, texts: Texts) -> list[str]:
    """The pages of a step's outcome, with the paging labels in the step's language."""
    return outcome(step, texts).pages


def outcome(step: Step, texts: Texts) -> Screens:
    """The pages of a step's outcome and the page its pending question is answered from."""
    more = texts.service(step.language, words.PAGE_NEXT)
    back = texts.service(step.language, words.PAGE_BACK)
    paged = layout(lines(step.events, texts), more, back)
    return Screens(paged.pages, answer_page(step, paged, texts))


def answer_page(step: Step, paged: Layout, texts: Texts) -> int:
    """The first page showing an option of the question the step waits on, or for a question
    without options the page where its prompt ends: before it, the worker has not seen what
    they would be answering. ``len(pages)`` when the step waits on nothing."""
    ask = step.waiting
    if ask is None:
        return len(paged.pages)
    before = lines(step.events[: _position(step.events, ask)], texts)
    prompt_end = len(before) + len(prose(ask.text))
    return paged.first_begun(prompt_end) if ask.options else paged.first_done(prompt_end)


def _position(events: Sequence[Event], ask: Ask) -> int:
    """Where the ask is among the events (the last occurrence: it is the step's last Ask)."""
    return max(n for n, event in enumerate(events) if event is ask)


def parts(text: str) -> list[str]:
    """The inputs a cumulative text holds (none for the empty text)."""
    return text.split(SEPARATOR) if text else []


def text_digest(session_id: str, text: str) -> str:
    """What is kept of a cumulative text: a digest salted by the session id (which is kept only
    as a digest too), so the answers in it cannot be guessed back from Redis."""
    return hashlib.sha256(f"{session_id}\x1f{text}".encode()).hexdigest()[:40]


@dataclass(frozen=True)
class Reading:
    """What one request's text means. ``newest`` is the input to apply (None: a dial-in);
    ``parts`` how many parts of the text are now consumed; ``retry``: the same text again;
    ``extends``: the previous text plus new parts, so the worker answered the screen last shown
    (only then do ``98``/``00`` page through it)."""

    newest: str | None
    parts: int
    retry: bool = False
    extends: bool = False


def read(session_id: str, text: str, previous: str | None, consumed: int) -> Reading:
    """Read a cumulative text against the digest of the previous one and the parts it held.
    Extending or not, the newest input is the last part and the count is that of this text."""
    given = parts(text)
    newest = given[-1] if given else None
    if previous is not None and text_digest(session_id, text) == previous:
        return Reading(newest, len(given), retry=True)
    grew = (
        previous is not None
        and len(given) > consumed
        and text_digest(session_id, SEPARATOR.join(given[:consumed])) == previous
    )
    return Reading(newest, len(given), extends=grew)


def message_id(session_id: str, text: str) -> str:
    """The id a retry of this request carries too: the session id and the text (hashed when
    long, so the id stays short whatever the worker typed)."""
    if len(text) <= PLAIN_ID_TEXT:
        return f"{session_id} text:{text}"
    return f"{session_id} sha256:{hashlib.sha256(text.encode()).hexdigest()[:40]}"


def end_id(session_id: str) -> str:
    """The id of the session's end notification (one per session)."""
    return f"{session_id} end"
