"""The suite's one leak scanner: everything the service keeps or prints, searched for phone
numbers in every format (SPEC §6).

``number_forms`` is every way a number may be written down; ``db_dump`` and ``redis_dump`` are
the whole database (every table the schema holds, found by reflection) and the whole of Redis
(every key of every type, RQ's zlib-compressed payloads opened); ``find_number`` and
``numbers_in`` search any nesting of those, pickles read back as text.
"""

from __future__ import annotations

import base64
import pickle
import re
import zlib
from collections.abc import Iterable
from typing import Any

import phonenumbers
from phonenumbers import PhoneNumberFormat
from sqlalchemy import MetaData, select
from sqlalchemy.engine import Engine

from gateway.identity import normalise
from gateway.services import Services

MIN_FORM_DIGITS = 7  # shorter than this a "form" would match times, sizes and ids by chance


def number_forms(address: str) -> set[str]:
    """The number as text in every format someone might write or encode it: E.164, without
    the plus, international and national (with spaces, dashes or nothing between the groups),
    the national significant number with and without its trunk 0, RFC 3966, the WhatsApp
    address, and E.164 in base64 and hex."""
    number = normalise(address)
    e164 = phonenumbers.format_number(number, PhoneNumberFormat.E164)
    national = phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL)
    international = phonenumbers.format_number(number, PhoneNumberFormat.INTERNATIONAL)
    significant = phonenumbers.national_significant_number(number)
    forms = {
        e164,
        e164[1:],
        international,
        national,
        phonenumbers.format_number(number, PhoneNumberFormat.RFC3966),
        significant,
        "0" + significant,
        f"whatsapp:{e164}",
    }
    for grouped in (international, international[1:], national):
        for separator in (" ", "-", ""):  # the groups split by spaces, by dashes, or by nothing
            forms.add(grouped.replace(" ", separator).replace("-", separator))
    forms |= {"".join(ch for ch in form if ch.isdigit() or ch == "+") for form in set(forms)}
    forms = {f for f in forms if sum(ch.isdigit() for ch in f) >= MIN_FORM_DIGITS}
    for plain in (e164, e164[1:]):
        raw = plain.encode()
        forms |= {
            base64.b64encode(raw).decode().rstrip("="),
            base64.urlsafe_b64encode(raw).decode().rstrip("="),
            raw.hex(),
        }
    return forms


# -- what is kept -------------------------------------------------------------------------------


_SCHEMAS: dict[str, MetaData] = {}


def _schema(engine: Engine) -> MetaData:
    """Every table in the database, as reflected (not only the models': alembic's too); once
    per database, whose schema the migrations fixed before any test ran."""
    url = engine.url.render_as_string(hide_password=False)
    if url not in _SCHEMAS:
        metadata = MetaData()
        metadata.reflect(bind=engine)
        _SCHEMAS[url] = metadata
    return _SCHEMAS[url]


def db_dump(services: Services | Engine) -> dict[str, list[str]]:
    """Every row of every table and column, as text, per table (rows sorted: comparable)."""
    engine = services if isinstance(services, Engine) else services.db.engine
    with engine.connect() as connection:
        return {
            name: sorted(map(repr, connection.execute(select(table))))
            for name, table in sorted(_schema(engine).tables.items())
        }


def redis_dump(redis) -> dict[bytes, Any]:
    """Every key's value, of every type (strings, hashes, lists, sets, sorted sets with their
    scores, streams with their entries); zlib-compressed values (RQ job payloads, results and
    failure records) decompressed."""
    dump: dict[bytes, Any] = {}
    for key in sorted(redis.scan_iter(count=1000)):
        kind = redis.type(key).decode()
        if kind == "string":
            value: Any = _open(redis.get(key))
        elif kind == "hash":
            value = {k: _open(v) for k, v in sorted(redis.hgetall(key).items())}
        elif kind == "list":
            value = [_open(v) for v in redis.lrange(key, 0, -1)]
        elif kind == "set":
            value = sorted(_open(v) for v in redis.smembers(key))
        elif kind == "zset":
            value = [(_open(m), s) for m, s in redis.zrange(key, 0, -1, withscores=True)]
        elif kind == "stream":
            value = [(i, {k: _open(v) for k, v in d.items()}) for i, d in redis.xrange(key)]
        else:
            value = kind
        dump[key] = value
    return dump


def _open(value):
    if isinstance(value, bytes):
        try:
            return zlib.decompress(value)
        except zlib.error:
            return value
    return value


def dump_database(services: Services) -> str:
    """The whole database as one text."""
    return "\n".join(f"{name}: {row}" for name, rows in db_dump(services).items() for row in rows)


def dump_redis(services: Services) -> bytes:
    """The whole of Redis as bytes, pickles read back as text."""
    return flatten(redis_dump(services.redis))


# -- searching ----------------------------------------------------------------------------------


def flatten(value: Any) -> bytes:
    """Any nesting of str, bytes, dicts and sequences as bytes: each bytes value as stored and
    what it may also be read as (``readable``)."""
    if isinstance(value, bytes):
        return value + b"\n" + readable(value)
    if isinstance(value, str):
        return value.encode("utf-8", "replace")
    if isinstance(value, dict):
        return b"\n".join(flatten(k) + b"\n" + flatten(v) for k, v in value.items())
    if isinstance(value, list | tuple | set | frozenset):
        return b"\n".join(flatten(v) for v in value)
    return repr(value).encode("utf-8", "replace")


_BASE64 = re.compile(rb"(?:[A-Za-z0-9+/]{4}|[A-Za-z0-9_-]{4})+(?:[A-Za-z0-9+/_-]{2,3}=?=?)?")


def readable(value: bytes, depth: int = 0) -> bytes:
    """What stored bytes say besides themselves: a pickle read back as text (RQ's job data; a
    number held as an int or inside an object has no digits in a pickle's bytes), and base64
    decoded, then decompressed and unpickled too (RQ's results stream keeps a job's return
    value and its exception that way)."""
    said = []
    if value.startswith(b"\x80"):  # every pickle protocol >= 2 starts with PROTO
        try:
            said.append(repr(pickle.loads(value)).encode("utf-8", "replace"))  # noqa: S301
        except Exception:  # not a pickle after all, or of a class this process cannot import
            pass
    if depth < 2 and len(value) >= 8 and _BASE64.fullmatch(value.strip()):
        try:
            decoded = base64.b64decode(value.strip() + b"==", altchars=_altchars(value))
        except ValueError:
            decoded = b""
        if decoded:
            opened = _open(decoded)
            said += [opened, readable(opened, depth + 1)]
    return b"\n".join(said)


def _altchars(value: bytes) -> bytes:
    return b"-_" if b"-" in value or b"_" in value else b"+/"


def find_number(address: str, *haystacks: Any) -> list[str]:
    """The forms of the number that occur in the haystacks (any nesting of str/bytes/...)."""
    raw = flatten(list(haystacks)) + b"\n" + repr(haystacks).encode("utf-8", "replace")
    return sorted(f for f in number_forms(address) if f.encode() in raw)


def numbers_in(addresses: Iterable[str], places: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(place, address, form) for every form of every number found in each named place."""
    found = []
    for place, haystack in places.items():
        raw = flatten(haystack)
        for address in addresses:
            found += [(place, address, f) for f in number_forms(address) if f.encode() in raw]
    return sorted(found)


def kept(services: Services, logs: dict[str, str]) -> dict[str, Any]:
    """Every place a number could be kept, by name: each table, each Redis key, each log."""
    return {
        **{f"database {table}": rows for table, rows in db_dump(services).items()},
        **{f"redis {key!r}": value for key, value in redis_dump(services.redis).items()},
        **{f"log {name}": text for name, text in logs.items()},
    }


def assert_no_numbers(addresses: list[str], services: Services, logs: str) -> None:
    """No number, in any format, in the database, Redis or the logs; none of them empty."""
    places = kept(services, {"logs": logs})
    assert any(v for k, v in places.items() if k.startswith("database ")), "empty database"
    assert any(k.startswith("redis ") for k in places), "the Redis dump is empty"
    assert logs, "no logs were captured: nothing was checked"
    found = numbers_in(addresses, places)
    assert not found, f"phone numbers kept: {found[:20]}"
