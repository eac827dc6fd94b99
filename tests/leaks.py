"""Search everything the service keeps or prints for phone numbers, in every format."""

from __future__ import annotations

import zlib

import phonenumbers
from phonenumbers import PhoneNumberFormat
from sqlalchemy import select

from gateway.identity import normalise
from gateway.services import Services
from store.models import Base


def number_forms(address: str) -> set[str]:
    """Every way the number could have been written down."""
    number = normalise(address)
    e164 = phonenumbers.format_number(number, PhoneNumberFormat.E164)
    forms = {
        e164,
        e164.lstrip("+"),
        phonenumbers.format_number(number, PhoneNumberFormat.INTERNATIONAL),
        phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL),
        phonenumbers.format_number(number, PhoneNumberFormat.RFC3966),
        str(number.national_number),
        "0" + str(number.national_number),
    }
    forms |= {"".join(ch for ch in form if ch.isdigit() or ch == "+") for form in set(forms)}
    return {f for f in forms if len(f.strip("+")) >= 7}


def dump_database(services: Services) -> str:
    lines = []
    with services.db.engine.connect() as connection:
        for table in Base.metadata.sorted_tables:
            for row in connection.execute(select(table)):
                lines.append(f"{table.name}: {tuple(row)!r}")
    return "\n".join(lines)


def _decoded(value: bytes) -> list[bytes]:
    """A Redis value as stored, plus its zlib-decompressed form if it is one (RQ job data)."""
    out = [value]
    try:
        out.append(zlib.decompress(value))
    except zlib.error:
        pass
    return out


def dump_redis(services: Services) -> bytes:
    redis = services.redis
    chunks: list[bytes] = []
    for key in redis.scan_iter(count=1000):
        chunks.append(key)
        kind = redis.type(key).decode()
        if kind == "string":
            values = [redis.get(key)]
        elif kind == "hash":
            values = [v for pair in redis.hgetall(key).items() for v in pair]
        elif kind == "list":
            values = redis.lrange(key, 0, -1)
        elif kind == "set":
            values = list(redis.smembers(key))
        elif kind == "zset":
            values = [member for member, _ in redis.zrange(key, 0, -1, withscores=True)]
        else:
            values = []
        for value in values:
            chunks.extend(_decoded(value if isinstance(value, bytes) else str(value).encode()))
    return b"\n".join(chunks)


def assert_no_numbers(addresses: list[str], services: Services, logs: str) -> None:
    database = dump_database(services)
    stored = dump_redis(services)
    assert database, "the database dump is empty: nothing was checked"
    assert stored, "the Redis dump is empty: nothing was checked"
    assert logs, "no logs were captured: nothing was checked"
    for address in addresses:
        for form in number_forms(address):
            assert form not in database, f"a phone number ({form!r} form) is in the database"
            assert form.encode() not in stored, f"a phone number ({form!r} form) is in Redis"
            assert form not in logs, f"a phone number ({form!r} form) is in the logs"
