"""Identity: the only place a phone number exists, and only until its pseudonym does (SPEC §6).

A number is normalised to E.164 with phonenumbers (``whatsapp:+88017...`` is the same worker as
``+88017...``), then turned into HMAC-SHA256 under the current key of the key ring. A WhatsApp
user who hides their number behind a username comes as ``whatsapp:<business-scoped user id>``
and is pseudonymised the same way, the id standing in for the number. The ring is
kept in the database, each key AES-GCM encrypted under the master key, mirrored into Redis as
that same ciphertext (gateway/directory_cache.py: a hop reads no database), and cached here
decrypted for at most ``KEY_CACHE_SECONDS`` so key changes reach every process within that time.
A rotation's key takes over at the same instant in every process (``KeyRing.in_force``).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, PhoneNumberMatcher

from .crypto import Crypto

KEY_CACHE_SECONDS = 2.0  # a process's copy of the ring is never older (SPEC §6 asks 5 s)
KEY_PURPOSE = "pseudonym-key"
CHANNEL_PREFIXES = ("whatsapp:", "tel:", "sms:")
REDACTED = "[number removed]"
# What a sender address may hold once its channel prefix is gone: digits and the usual
# separators. Letters are refused: phonenumbers would read them as a vanity number.
ADDRESS_CHARS = re.compile(r"[+\d ().\-]*\d[+\d ().\-]*")
# 7+ digits (any script), optionally led by ( or +, broken by spaces, dots, dashes, brackets,
# commas, slashes, underscores, # or * (people group digits every way they can type).
# Dashes of every width and ~ | ; ' join groups too (":" and "x" only in free text, below: a
# log line's times and sizes would otherwise go).
PHONE_LIKE = re.compile(
    r"\(?\+?\d[\d\s().\-,/_#*~|;'\u2010-\u2015\u2212\u2043\ufe58\ufe63\uff0d]{5,}\d"
)
MIN_PHONE_DIGITS = 7
# What a worker may type for a number in free text: groups of digits (any script), with the
# common letter-for-digit swaps (o and O for 0, I and l for 1) inside a group that holds a real
# digit, joined by one to three separators of any kind (spaces, punctuation, dashes of every
# width, "x"). A run of such groups with 7 or more digit characters, 4 of them real digits,
# is a number (scrub, below).
_DIGITISH = r"\doOIl"
_GROUP = rf"[{_DIGITISH}]*\d[{_DIGITISH}]*"
_SEPARATOR = r"[\s().,/_#*~|:;'\"`+xX\-\u00b7\u2010-\u2015\u2212\u2043\ufe58\ufe63\uff0d]{1,3}"
_SWAPS_ALONE = r"[oOIl]{1,4}"  # a group typed all in letters ("o" for 0, "oooo" for 0000)
_LETTER = r"[^\W\d_]"
TYPED_NUMBER = re.compile(
    # groups of letters alone first (o o 2 2 222): the first not a word's end
    rf"(?:(?<!{_LETTER}){_SWAPS_ALONE}{_SEPARATOR}(?:{_SWAPS_ALONE}{_SEPARATOR})*)?"
    rf"[+(]{{0,2}}{_GROUP}(?:{_SEPARATOR}(?:{_SWAPS_ALONE}{_SEPARATOR})*{_GROUP})*"
    rf"(?:(?:{_SEPARATOR}{_SWAPS_ALONE})+(?!{_LETTER}))?"  # and last: the last not a word's start
)
SWAPPED = frozenset("oOIl")
MIN_REAL_DIGITS = 4
# A time of day or a span of two (08:00, 20:00:59, 08:00-20:00): kept, though ":" may also split
# a typed number, when it stands apart from other digits (``_standalone``).
_TIME = r"(?:[01]?\d|2[0-3]):[0-5]\d(?::[0-5]\d)?"
TIME_OF_DAY = re.compile(
    rf"(?<![\d:]){_TIME}(?:\s*[-~\u2010-\u2015]\s*{_TIME}|\s+to\s+{_TIME})?(?![\d:])"
)
_DIGIT_NEAR_BEFORE = re.compile(rf"[{_DIGITISH}](?:{_SEPARATOR})?$")
_DIGIT_NEAR_AFTER = re.compile(rf"(?:{_SEPARATOR})?[{_DIGITISH}]")
# An ISO-8601 date or timestamp, which PHONE_LIKE would otherwise take for a number.
ISO_TIMESTAMP = re.compile(
    r"(?<![\d+])(?:19|20)\d\d-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])"
    r"(?:[T ](?:[01]\d|2[0-3]):[0-5]\d(?::[0-5]\d(?:[.,]\d{1,9})?)?(?:Z|[+-]\d\d:?\d\d)?)?"
    r"(?!\d)"
)
# A WhatsApp user's business-scoped user id (Meta's BSUID), sent instead of the number when the
# user has a username: letters (the ISO country code), a dot, up to 128 letters and digits, with
# one more part for a parent id (US.13491208655302741918, US.ENT.11815799212886844830). It
# begins with letters, so it can never be read as a phone number.
SCOPED_CHANNEL = "whatsapp:"
SCOPED_ID = re.compile(r"[A-Za-z]{2,8}(?:\.[A-Za-z0-9]{1,128}){1,2}")
_DIGIT_BEFORE = re.compile(r"\d[\s().\-+,/_#*]*\Z")
_DIGIT_AFTER = re.compile(r"[\s().\-,/_#*]*\+?\d")


class InvalidAddress(ValueError):
    """The sender's address is not a phone number we can use. The message never holds it."""


@dataclass(frozen=True)
class Pseudonym:
    """A worker as the rest of the system knows them."""

    value: str  # hex HMAC-SHA256 of the E.164 number under key ``key_id``
    key_id: int
    country: str | None  # ISO region of the number (language order, time zone); not identifying
    # The same worker under each previous key that still exists (newest first), as
    # (key id, pseudonym): where a returning worker's profile is found after a rotation, and
    # what DELETE erases besides the current period. Empty once those keys are destroyed.
    earlier: tuple[tuple[int, str], ...] = ()

    @property
    def seed(self) -> int:
        """A stable number per worker, for the daily question rotation."""
        return int(self.value[:8], 16)


def normalise(address: str) -> phonenumbers.PhoneNumber:
    """Parse a provider's sender address into a valid phone number, or raise InvalidAddress."""
    raw = (address or "").strip()
    for prefix in CHANNEL_PREFIXES:
        if raw.lower().startswith(prefix):
            raw = raw[len(prefix) :].strip()
    if not ADDRESS_CHARS.fullmatch(raw):
        raise InvalidAddress("sender is not a phone number")
    if raw[0].isdigit():
        raw = "+" + raw  # WhatsApp WaId and some gateways drop the plus
    try:
        number = phonenumbers.parse(raw, None)
    except NumberParseException:
        raise InvalidAddress("sender is not an international phone number") from None
    if not phonenumbers.is_possible_number(number):
        raise InvalidAddress("sender is not a possible phone number")
    return number


def scoped_id(address: str) -> str | None:
    """The business-scoped user id a ``whatsapp:<id>`` address names, exactly as sent; None for
    any other address (a phone number, or nothing usable)."""
    raw = (address or "").strip()
    if not raw.lower().startswith(SCOPED_CHANNEL):
        return None
    user_id = raw[len(SCOPED_CHANNEL) :]
    return user_id if SCOPED_ID.fullmatch(user_id) else None


@dataclass(frozen=True, repr=False)
class Number:
    """A sender's phone number read once per request (phonenumbers' parse is a hop's dearest
    step after its Redis round trips): its E.164 form and its country. It lives as long as the
    request, like the address it was read from, and its repr never shows the number."""

    e164: str
    country: str | None  # ISO region; None for "ZZ" (unknown) and "001" (non-geographic)

    def __repr__(self) -> str:
        return "Number(withheld)"


def parse(address: str) -> Number:
    """The sender's number (InvalidAddress if it is none)."""
    number = normalise(address)
    region = phonenumbers.region_code_for_number(number) or ""
    # "ZZ" unknown, "001" non-geographic (satellite, +800): no country to go by.
    country = region if region.isalpha() and region != "ZZ" else None
    return Number(phonenumbers.format_number(number, PhoneNumberFormat.E164), country)


def e164(address: str | Number) -> str:
    """The sender's number in E.164 form, from any provider's address or one already read."""
    if isinstance(address, Number):
        return address.e164
    return phonenumbers.format_number(normalise(address), PhoneNumberFormat.E164)


def scrub(text: str, region: str | None = None) -> str:
    """Free text with every phone number in it replaced, before it is stored anywhere.

    What a worker may type for a number goes first (``TYPED_NUMBER``: digits of any script,
    any separator, letters for digits; times of day and ISO dates survive); then every run of
    7 or more digits left (as log lines are redacted); then phonenumbers removes any valid
    number in an international or (given the region) national format that is left.
    """
    if not text:
        return text
    text = _kept_apart(
        text, ISO_TIMESTAMP, lambda part: _kept_apart(part, TIME_OF_DAY, _typed, _standalone)
    )
    text = redact_phone_like(text, REDACTED)
    spans = [
        (m.start, m.end)
        for m in PhoneNumberMatcher(text, region or "ZZ", leniency=phonenumbers.Leniency.VALID)
    ]
    for start, end in reversed(spans):
        text = text[:start] + REDACTED + text[end:]
    return text


def redact_phone_like(text: str, replacement: str) -> str:
    """Text with every run of 7+ digits replaced; ISO dates and timestamps standing clear of
    other digits survive (a log line keeps its times, a number next to one still goes)."""
    kept: list[tuple[int, int]] = []
    for match in ISO_TIMESTAMP.finditer(text):
        # A date glued to other digits may be part of a number. A time (":") cannot be, so
        # only a bare date is also checked on its right.
        glued = _DIGIT_BEFORE.search(text, 0, match.start()) or (
            ":" not in match.group() and _DIGIT_AFTER.match(text, match.end())
        )
        if not glued:
            kept.append(match.span())
    pieces, position = [], 0
    for start, end in kept + [(len(text), len(text))]:
        pieces.append(_redact_runs(text[position:start], replacement))
        pieces.append(text[start:end])
        position = end
    return "".join(pieces)


def _typed(text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        run = match.group()
        real = sum(c.isdigit() for c in run)
        swapped = sum(c in SWAPPED for c in run)
        if real >= MIN_REAL_DIGITS and real + swapped >= MIN_PHONE_DIGITS:
            return REDACTED
        return run

    return TYPED_NUMBER.sub(replace, text)


def _standalone(text: str, match: re.Match[str]) -> bool:
    """A time of day with no digit (or letter typed for one) next to it: one may be part of a
    number (1:28 3946)."""
    before = text[max(0, match.start() - 5) : match.start()]
    return not _DIGIT_NEAR_BEFORE.search(before) and not _DIGIT_NEAR_AFTER.match(text, match.end())


def _kept_apart(
    text: str,
    keep: re.Pattern[str],
    change: Callable[[str], str],
    kept: Callable[[str, re.Match[str]], bool] = lambda text, match: True,
) -> str:
    """``change`` applied to the text between the matches of ``keep`` (those ``kept`` says
    stay), which stay as they are."""
    pieces, position = [], 0
    for match in keep.finditer(text):
        if not kept(text, match):
            continue
        pieces += [change(text[position : match.start()]), match.group()]
        position = match.end()
    pieces.append(change(text[position:]))
    return "".join(pieces)


def _redact_runs(text: str, replacement: str) -> str:
    return PHONE_LIKE.sub(
        lambda m: (
            replacement if sum(c.isdigit() for c in m.group()) >= MIN_PHONE_DIGITS else m.group()
        ),
        text,
    )


@dataclass(frozen=True)
class Key:
    id: int
    secret: bytes
    status: str
    activates_at: float = float("-inf")  # epoch seconds: when it takes over (store/keyring.py)


# (id, status, ciphertext, activates_at epoch seconds or None, master key id or None), newest
# first; a loader may also give the older 3- and 4-tuples (then the key took over when it was
# made, and the ciphertext is tried under each master key held).
KeyLoader = Callable[[], list[tuple]]


class KeyRing:
    """Decrypted live keys, loaded again (from Redis, in the app) at most every
    KEY_CACHE_SECONDS, so a rotation or a destruction reaches every process within that time.

    Which key is in force is decided on the wall clock, not by the stored status: a rotation
    makes its key LEAD_SECONDS ahead of taking over (store/keyring.py), every process holds it
    by then, and all of them change keys at its ``activates_at``."""

    def __init__(
        self,
        load: KeyLoader,
        crypto: Crypto,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ):
        self._load = load
        self._crypto = crypto
        self._clock = clock
        self._wall = wall
        self._keys: list[Key] = []
        self._blobs: list[tuple] = []
        self._loaded_at = float("-inf")
        self._lock = threading.Lock()

    def keys(self) -> list[Key]:
        """Every key this process holds: in force, previous, and one about to take over."""
        with self._lock:
            if self._clock() - self._loaded_at >= KEY_CACHE_SECONDS or not self._keys:
                blobs = [tuple(entry) for entry in self._load()]
                if blobs != self._blobs or not self._keys:  # decrypt only what changed
                    self._keys = [self._key(entry) for entry in blobs]
                    self._blobs = blobs
                self._loaded_at = self._clock()
            return list(self._keys)

    def _key(self, entry: tuple) -> Key:
        kid, status, blob = entry[:3]
        activates = entry[3] if len(entry) > 3 and entry[3] is not None else float("-inf")
        master_key_id = entry[4] if len(entry) > 4 else None
        secret = self._crypto.decrypt(blob, KEY_PURPOSE, context(kid), master_key_id)
        return Key(kid, secret, status, float(activates))

    def in_force(self) -> tuple[Key, list[Key]]:
        """The key new pseudonyms are made under now, and the earlier keys still alive (newest
        first). A key whose time has not come yet is neither."""
        now, keys = self._wall(), self.keys()
        started = sorted(
            (key for key in keys if key.activates_at <= now),
            key=lambda key: (key.activates_at, key.id),
            reverse=True,
        )
        if not started or not any(key.status == "current" for key in keys):
            raise LookupError(
                "the pseudonym key ring has no current key: run 'workervoice db upgrade'"
            )
        return started[0], started[1:]

    def current(self) -> Key:
        return self.in_force()[0]


def context(key_id: int) -> bytes:
    return f"key:{key_id}".encode()


def key_encrypter(crypto: Crypto) -> Callable[[bytes, int], tuple[bytes, str]]:
    """How a new key's material is stored (store/keyring.Encrypt): under the current master key,
    bound to the key's id, with that master key's id."""
    return lambda secret, kid: (
        crypto.encrypt(secret, KEY_PURPOSE, context(kid)),
        crypto.master_key_id,
    )


class Identity:
    def __init__(self, ring: KeyRing):
        self.ring = ring

    def pseudonymise(self, address: str | Number) -> Pseudonym:
        """The sender's pseudonym under the current key. The number goes no further.

        ``address`` is a phone number in any provider format, one already read (``parse``), or
        ``whatsapp:<business-scoped user id>``: the HMAC is then taken over that whole text,
        which no E.164 number (always ``+`` and digits) can equal, and there is no country to
        go by."""
        if isinstance(address, Number):
            return self._pseudonym(address.e164, address.country)
        user_id = scoped_id(address)
        if user_id is not None:
            return self._pseudonym(SCOPED_CHANNEL + user_id, None)
        number = parse(address)
        return self._pseudonym(number.e164, number.country)

    def _pseudonym(self, identifier: str, country: str | None) -> Pseudonym:
        current, older = self.ring.in_force()
        earlier = tuple((key.id, _hmac(key.secret, identifier)) for key in older)
        return Pseudonym(
            value=_hmac(current.secret, identifier),
            key_id=current.id,
            country=country,
            earlier=earlier,
        )


def _hmac(secret: bytes, identifier: str) -> str:
    return hmac.new(secret, identifier.encode(), hashlib.sha256).hexdigest()
