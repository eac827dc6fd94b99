"""Reading what a worker typed: option numbers in any script, option texts, numbers."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

_SPACES = re.compile(r"\s+")


def _is_edge(ch: str) -> bool:
    """Punctuation in any script (``.``, ``!``, the Bengali and Devanagari danda ``।``) or space."""
    return ch.isspace() or unicodedata.category(ch).startswith("P")


def clean(text: str) -> str:
    """Normalise a reply for matching: NFC, single spaces, no edge punctuation, casefolded."""
    text = _SPACES.sub(" ", unicodedata.normalize("NFC", text or ""))
    start, end = 0, len(text)
    while start < end and _is_edge(text[start]):
        start += 1
    while end > start and _is_edge(text[end - 1]):
        end -= 1
    return text[start:end].casefold()


def ascii_digits(text: str) -> str | None:
    """Digits in any script (Bengali ৩, Devanagari ३, Tamil ௩ ...) as ASCII; None if not all
    digits."""
    text = (text or "").strip()
    if not text or not all(ch.isdecimal() for ch in text):
        return None
    return "".join(str(unicodedata.decimal(ch)) for ch in text)


MAX_NUMBER_DIGITS = 6  # a phone number has more: never taken, or kept, as an answer


def parse_number(text: str) -> float | None:
    """A whole or decimal number written in any script's digits; None when it is not one.

    A comma works as the decimal mark too (``2,5``), and a trailing mark is ignored (``5.``).
    More than MAX_NUMBER_DIGITS digits is not an answer to any question here, and would be a
    phone number as often as not: refused.
    """
    text = (text or "").strip().replace(",", ".")
    if sum(ch.isdecimal() for ch in text) > MAX_NUMBER_DIGITS:
        return None
    negative = text.startswith("-")
    whole, dot, fraction = text.removeprefix("-").partition(".")
    whole_digits = ascii_digits(whole) if whole else ("0" if dot and fraction else None)
    if whole_digits is None:
        return None
    fraction_digits = ascii_digits(fraction) if fraction else "0"
    if fraction_digits is None:
        return None
    value = float(f"{whole_digits}.{fraction_digits}")
    return -value if negative else value


def pick_option(text: str, choices: Iterable[Iterable[str]]) -> int | None:
    """Index of the chosen option: by its number (1-based, any script) or by any of its names.

    ``choices`` gives, for each option in menu order, every name it may be called by (the text in
    the worker's language, the source text, the stored value); matching ignores case.
    """
    choices = [list(names) for names in choices]
    digits = ascii_digits(clean(text))  # "1", " 1.", "(১)" all pick the first option
    if digits is not None:
        index = int(digits) - 1
        return index if 0 <= index < len(choices) else None
    wanted = clean(text)
    if not wanted:
        return None
    for index, names in enumerate(choices):
        if any(clean(name) == wanted for name in names):
            return index
    return None


def as_number_text(value: float) -> float | int:
    """Store whole numbers as ints so 3 reads back as 3, not 3.0."""
    return int(value) if float(value).is_integer() else value
