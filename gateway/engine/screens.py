"""USSD screens (SPEC §4, PROVIDERS.md §7.5): how much one screen holds, and how longer content
is split into pages. Pure string arithmetic, shared by the USSD channel (which shows the pages)
and lint (which warns about a prompt over three pages), so the two measure the same thing.

A screen is the text after ``CON ``/``END ``. It holds at most 182 characters when every
character is in the GSM-7 alphabet (an extension character counts two), otherwise 80 UTF-16
units. Each page is measured on its own, footer included: an English page of a Bangla menu may
hold 182 characters while the Bangla page before it holds 80.

Content comes as ``Line`` values: prose (a message, a question's text), which may be split at
word boundaries, and whole lines (a numbered option), which never are. Longer content becomes
pages, filled in order: an option that does not fit what is left of a page starts the next
one; so does a prose line that fits a page of its own, unless splitting it instead saves a page
(fewer pages matter more: every page costs the worker a round trip within a timed session);
a prose line too long for a page of its own is split, its first words filling the page. Each
page but the last ends with ``98. <More>``, each but the first with ``00. <Back>`` (on a middle
page ``98`` comes first and ``00`` is the last line). A single word longer than a page, or an
option line longer than a page with its footer, is cut, since it cannot be shown otherwise (the
shipped flows have none: tests check every prompt).

``layout`` also says, page by page, how far the content has got: how many lines have begun and
how many have been shown whole by the end of each page, so a channel knows on which page a
question's options (or the end of its text) first appear.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .segments import gsm7_length

USSD_GSM7 = 182  # GSM-7 characters in one screen (160 octets, 7-bit packed)
USSD_UCS2 = 80  # UTF-16 units in one screen when a character is outside GSM-7
NEXT_KEY = "98"  # shows the next page
BACK_KEY = "00"  # shows the previous page
MANY_PAGES = 3  # lint warns about a prompt taking more pages than this


@dataclass(frozen=True)
class Line:
    """One line of a screen's content; ``whole`` lines (numbered options) are never cut."""

    text: str
    whole: bool = False


def screen_length(text: str) -> tuple[int, int]:
    """(length, what one screen holds): GSM-7 septets out of 182, or UTF-16 units out of 80."""
    septets = gsm7_length(text)
    if septets is not None:
        return septets, USSD_GSM7
    return len(text.encode("utf-16-le")) // 2, USSD_UCS2


def fits(text: str) -> bool:
    """Whether the text fits one USSD screen."""
    length, limit = screen_length(text)
    return length <= limit


def prose(text: str) -> list[Line]:
    """A message or a question's text, one Line per line of it (blank lines left out: a screen
    has no room for them)."""
    return [Line(line) for line in text.splitlines() if line.strip()]


def prompt_lines(text: str, options: Iterable[str]) -> list[Line]:
    """A question as USSD shows it: its text, then the options numbered from 1 (``1. Yes``, as
    on SMS), one whole line each."""
    numbered = [Line(f"{n}. {option}", whole=True) for n, option in enumerate(options, 1)]
    return [*prose(text), *numbered]


@dataclass(frozen=True)
class Layout:
    """The pages showing some lines, and for each page how many of the lines have begun
    (``begun``: a line split across pages has begun on the first of them) and how many have
    been shown whole (``done``) by its end."""

    pages: list[str]
    begun: list[int]
    done: list[int]

    def first_begun(self, index: int) -> int:
        """The first page showing (the start of) line ``index``; the last page if none does."""
        return next((n for n, count in enumerate(self.begun) if count > index), self._last)

    def first_done(self, count: int) -> int:
        """The first page by whose end the first ``count`` lines are shown whole."""
        return next((n for n, shown in enumerate(self.done) if shown >= count), self._last)

    @property
    def _last(self) -> int:
        return len(self.pages) - 1


def paginate(lines: Sequence[Line], more: str, back: str) -> list[str]:
    """The screens showing the lines in order: one when they fit, else pages with the translated
    ``more`` / ``back`` labels after ``98.`` / ``00.``."""
    return layout(lines, more, back).pages


def layout(lines: Sequence[Line], more: str, back: str) -> Layout:
    """The pages ``paginate`` gives, with how far the lines have got on each."""
    texts = [line.text for line in lines]
    if fits(_join(texts)):
        return Layout([_join(texts)], [len(lines)], [len(lines)])
    labels = (f"{NEXT_KEY}. {more}", f"{BACK_KEY}. {back}")
    kept, filled = _pages(lines, labels, keep=True), _pages(lines, labels, keep=False)
    return kept if len(kept.pages) <= len(filled.pages) else filled


def _pages(lines: Sequence[Line], labels: tuple[str, str], keep: bool) -> Layout:
    """Pages of lines too long for one screen. ``keep``: a prose line that does not fit what is
    left of a page but fits a page of its own starts the next page whole rather than being
    split."""
    next_line, back_line = labels
    queue = deque(lines)
    paged = Layout([], [], [])
    while queue:
        last_footer = [back_line] if paged.pages else []
        rest = [line.text for line in queue]
        if fits(_join(rest + last_footer)):
            paged.pages.append(_join(rest + last_footer))
            queue.clear()
        else:
            footer = [next_line, *last_footer]
            later = [next_line, back_line] if keep else None
            paged.pages.append(_join(_fill(queue, footer, later) + footer))
        done = len(lines) - len(queue)
        split = bool(queue) and queue[0] is not lines[done]  # its rest is left in the queue
        paged.begun.append(done + int(split))
        paged.done.append(done)
    return paged


def page_count(lines: Sequence[Line], more: str, back: str) -> int:
    return len(paginate(lines, more, back))


def _fill(queue: deque[Line], footer: list[str], later: list[str] | None) -> list[str]:
    """Take from the queue what fits one page above the footer (at least something, so paging
    always ends). An option that does not fit what is left of the page starts the next one, and
    so does a prose line that fits a page of its own (whose footer is at most ``later``) unless
    ``later`` is None; else a prose line is split to fill the page, its rest left in the
    queue."""
    body: list[str] = []
    while queue:
        line = queue[0]
        if fits(_join([*body, line.text, *footer])):
            body.append(queue.popleft().text)
            continue
        whole_next = line.whole or (later is not None and fits(_join([line.text, *later])))
        if _shows(body) and whole_next:
            break  # the line starts the next page, whole
        head, tail = _split(line.text, body, footer)
        if not head:
            break  # not one more word fits here: the line starts the next page
        body.append(head)
        if tail:
            queue[0] = Line(tail, line.whole)
        else:
            queue.popleft()
        break
    if not body and queue:  # labels too long to leave room for anything: show it regardless
        body.append(queue.popleft().text)
    return body


def _split(text: str, body: list[str], footer: list[str]) -> tuple[str, str]:
    """The longest run of the text's first words that fits the page, and the rest. On an empty
    page a first word too long for any page is cut (at least one character is taken)."""
    words = text.split()
    taken = 0
    while taken < len(words) and fits(_join([*body, " ".join(words[: taken + 1]), *footer])):
        taken += 1
    if taken:
        return " ".join(words[:taken]), " ".join(words[taken:])
    if _shows(body) or not words:
        return "", text
    first = words[0]
    cut = 1
    while cut < len(first) and fits(_join([*body, first[: cut + 1], *footer])):
        cut += 1
    return first[:cut], " ".join([first[cut:], *words[1:]])


def _shows(body: Sequence[str]) -> bool:
    """Whether a page's lines so far show anything (blank lines do not)."""
    return any(line.strip() for line in body)


def _join(lines: Sequence[str]) -> str:
    return "\n".join(lines)
