"""What the engine needs to know about languages, as a protocol the caller implements."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import cache, lru_cache
from typing import Protocol

from babel import Locale
from babel.languages import get_official_languages

from .events import Say

SOURCE_LANGUAGE = "en"


class Texts(Protocol):
    def flow(self, language: str | None, msgid: str) -> str:
        """A flow string (ask, option, finish, keyword) in the language; the msgid if missing."""

    def service(self, language: str | None, msgid: str) -> str:
        """One of the service's own words (words.py) in the language; the msgid if missing."""

    def languages(self) -> list[str]:
        """Every language a worker may choose: those with a flows catalog, plus the source."""


@cache  # codes come from the catalogs on disk: a handful, asked for on every language menu
def language_name(code: str) -> str:
    """The language's name in itself, as Babel gives it (বাংলা, हिन्दी, Kiswahili ...)."""
    try:
        name = Locale.parse(code).get_display_name(code) or code
    except (ValueError, LookupError):
        return code
    return name[:1].upper() + name[1:]


def languages_for(country: str | None, available: Iterable[str]) -> list[str]:
    """Available languages with the country's own first (in Babel's order), then the rest."""
    return list(_languages_for(country, tuple(available)))


# Bounded: the country comes from a worker's number, so the keys are not all ours to choose.
@lru_cache(maxsize=1024)
def _languages_for(country: str | None, available: tuple[str, ...]) -> tuple[str, ...]:
    local: list[str] = []
    if country:
        try:
            local = [c for c in get_official_languages(country, de_facto=True) if c in available]
        except (ValueError, LookupError):
            local = []
    rest = sorted((c for c in available if c not in local), key=lambda c: (c != SOURCE_LANGUAGE, c))
    return (*local, *rest)


def guess_language(country: str | None, available: list[str]) -> str:
    """The language to speak before the worker has chosen one."""
    ordered = languages_for(country, available)
    return ordered[0] if ordered else SOURCE_LANGUAGE


def reworded(event: Say, texts: Texts, instead: Mapping[str, str]) -> str:
    """A service message in a channel's own words: ``instead`` maps a words.py msgid to the one
    the channel says in its place (voice says "press", USSD never "send any message"), filled
    with the same values. Other messages, and flow texts, are said as the engine worded them."""
    msgid = instead.get(event.msgid) if event.service else None
    if msgid is None:
        return event.text
    return texts.service(event.language, msgid).format(**dict(event.values))
