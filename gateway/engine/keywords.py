"""The words a worker may send to reach the service or start a flow, in every language.

Every message is checked against STOP, HELP, LANG and DELETE and against the flows' keywords,
each in English and in every catalog's translation. Those forms depend only on the loaded flows
and texts, which are immutable once loaded, so they are built once per (FlowSet, Texts) pair and
kept in a small cache that holds both weakly: a reload builds new forms and the old ones go.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass

from . import words
from .model import FlowSet
from .parsing import clean
from .texts import Texts

RESERVED = (words.KEYWORD_STOP, words.KEYWORD_HELP, words.KEYWORD_LANG, words.KEYWORD_DELETE)
CACHE_SIZE = 8  # live sets: the current one, plus the old ones steps still running may hold


@dataclass(frozen=True)
class KeywordForms:
    """Each word as ``clean(text).upper()`` of a message would read it."""

    reserved: Mapping[str, frozenset[str]]  # STOP/HELP/LANG/DELETE msgid -> its forms
    flows: Mapping[str, str]  # a flow keyword's form -> the flow it starts (the first one's)

    def is_reserved(self, word: str, msgid: str) -> bool:
        """Whether ``word`` (a cleaned, upper-cased message) is the reserved keyword ``msgid``."""
        return bool(word) and word in self.reserved[msgid]


def build(flows: FlowSet, texts: Texts) -> KeywordForms:
    """The forms of every keyword, as the runtime matched them message by message before."""
    languages = texts.languages()
    reserved = {
        msgid: frozenset(
            {msgid.upper()} | {clean(texts.service(lang, msgid)).upper() for lang in languages}
        )
        for msgid in RESERVED
    }
    starts: dict[str, str] = {}
    for flow in flows.flows.values():  # the first flow to claim a form keeps it
        for keyword in flow.keywords:
            starts.setdefault(keyword, flow.id)
            for lang in languages:
                starts.setdefault(clean(texts.flow(lang, keyword)).upper(), flow.id)
    return KeywordForms(reserved=reserved, flows=starts)


_Key = tuple[int, int]
_cache: dict[_Key, tuple[weakref.ref[FlowSet], weakref.ref[Texts], KeywordForms]] = {}
_lock = threading.Lock()


def keyword_forms(flows: FlowSet, texts: Texts) -> KeywordForms:
    """The forms for this pair, built on first use. Keyed on the two objects' identity and
    checked through weak references, so a recycled id never returns another pair's forms."""
    key = (id(flows), id(texts))
    with _lock:
        entry = _cache.get(key)
    if entry is not None and entry[0]() is flows and entry[1]() is texts:
        return entry[2]
    forms = build(flows, texts)
    try:
        refs = weakref.ref(flows), weakref.ref(texts)
    except TypeError:  # a Texts without weak reference support: correct, just not cached
        return forms
    with _lock:
        _cache.pop(key, None)
        while len(_cache) >= CACHE_SIZE:
            del _cache[next(iter(_cache))]  # the oldest
        _cache[key] = (*refs, forms)
    return forms
