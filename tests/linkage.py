"""An attacker who holds the database, the master key and a list of phone numbers, and tries to
link each number to stored answers (SPEC §6: once a key is destroyed, the answers under it "can
no longer be linked to any number, by anyone").

``link`` does everything such an attacker can do with what they hold: decrypt every key still
in the ring, compute every number's pseudonym under each (in every form the number could have
been pseudonymised from), and then follow whatever else the database joins a known pseudonym to:

- the answers stored under it;
- the daily rotation's seed a profile under it carries, when that seed is a prefix of another
  pseudonym (store/migration.py carried one across a rotation);
- the request an answer came in (``event_id`` holds a digest of it): another answer from the
  same request, under another pseudonym, is the same worker;
- a migration mark (``migrated_pseudonyms``) naming an old pseudonym next to a new one;
- the contact vault, opened with the master key: a contact names its pseudonym.

Each link found makes more pseudonyms known, until nothing new is found.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import Column, LargeBinary, MetaData, Table, create_engine, inspect, select
from sqlalchemy.engine import Engine
from sqlalchemy.pool import StaticPool
from sqlalchemy.types import TypeEngine

from gateway import vault
from gateway.crypto import Crypto, CryptoError
from gateway.identity import KEY_PURPOSE, context

from .leaks import number_forms


@dataclass
class Linked:
    """What the attacker tied to one number."""

    pseudonyms: dict[str, str] = field(default_factory=dict)  # pseudonym -> how it was found
    answers: dict[int, str] = field(default_factory=dict)  # answer id -> through which pseudonym


def stolen(engine: Engine) -> Engine:
    """A copy of the whole database, as an attacker would take it away: every table and column
    it has (by reflection, not the models': a column the code no longer knows is taken too),
    every row, in an in-memory SQLite database of their own."""
    source = MetaData()
    source.reflect(bind=engine)
    copy, target = create_engine("sqlite://", poolclass=StaticPool), MetaData()
    for table in source.sorted_tables:
        Table(table.name, target, *(Column(c.name, _generic(c.type)) for c in table.columns))
    target.create_all(copy)
    with engine.connect() as reading, copy.begin() as writing:
        for table in source.sorted_tables:
            rows = [dict(row._mapping) for row in reading.execute(select(table))]
            if rows:
                writing.execute(target.tables[table.name].insert(), rows)
    return copy


def _generic(kind: TypeEngine) -> TypeEngine:
    try:
        return kind.as_generic()
    except NotImplementedError:
        return LargeBinary()


def recoverable_keys(engine: Engine, master_key: bytes) -> dict[int, bytes]:
    """Every key of the ring whose material the master key still opens (a destroyed key's is
    NULL: nothing to open)."""
    crypto, keys = Crypto(master_key), {}
    ring = _table(engine, "pseudonym_keys")
    with engine.connect() as connection:
        for key_id, secret in connection.execute(select(ring.c.id, ring.c.secret)):
            if secret is None:
                continue
            try:
                keys[key_id] = crypto.decrypt(bytes(secret), KEY_PURPOSE, context(key_id))
            except CryptoError:
                continue
    return keys


def link(engine: Engine, master_key: bytes, numbers: list[str]) -> dict[str, Linked]:
    """For each number, the pseudonyms and answers (by id) the attacker ties to it."""
    keys = recoverable_keys(engine, master_key)
    answers, workers, marks = _rows(engine)
    vaulted = opened_contacts(engine, master_key)
    under: dict[str, list[int]] = defaultdict(list)  # pseudonym -> answer ids
    by_request: dict[str, set[str]] = defaultdict(set)  # request digest -> pseudonyms
    requests_of: dict[str, set[str]] = defaultdict(set)  # pseudonym -> request digests
    for answer in answers:
        under[answer["pseudonym"]].append(answer["id"])
        if request := _request(answer["event_id"]):
            by_request[request].add(answer["pseudonym"])
            requests_of[answer["pseudonym"]].add(request)
    stored = set(under) | {w["pseudonym"] for w in workers} | {m["pseudonym"] for m in marks}
    seeds = {w["pseudonym"]: w["seed"] for w in workers if w.get("seed") is not None}
    noted: dict[str, set[str]] = defaultdict(set)  # a migration mark's old <-> new pseudonym
    for mark in marks:
        if mark.get("moved_to"):
            noted[mark["pseudonym"]].add(mark["moved_to"])
            noted[mark["moved_to"]].add(mark["pseudonym"])

    found: dict[str, Linked] = {}
    for number in numbers:
        linked = Linked()
        todo = []
        for form in _identifiers(number):
            for key_id, secret in keys.items():
                pseudonym = hmac.new(secret, form.encode(), hashlib.sha256).hexdigest()
                if pseudonym in stored and pseudonym not in linked.pseudonyms:
                    linked.pseudonyms[pseudonym] = f"HMAC of {form!r} under key {key_id}"
                    todo.append(pseudonym)
        for pseudonym, contact in vaulted.items():
            if contact in _identifiers(number) and pseudonym not in linked.pseudonyms:
                linked.pseudonyms[pseudonym] = "the contact vault, opened"
                todo.append(pseudonym)
        while todo:
            pseudonym = todo.pop()
            for answer_id in under.get(pseudonym, ()):
                linked.answers.setdefault(answer_id, pseudonym)
            leads = []
            if pseudonym in seeds:
                prefix = f"{seeds[pseudonym]:08x}"
                leads += [(p, f"seed of {pseudonym[:12]}") for p in stored if p.startswith(prefix)]
            leads += [(p, f"migration mark of {pseudonym[:12]}") for p in noted[pseudonym]]
            for request in requests_of.get(pseudonym, ()):
                leads += [(p, f"request {request[:12]}") for p in by_request[request]]
            for lead, how in leads:
                if lead not in linked.pseudonyms:
                    linked.pseudonyms[lead] = how
                    todo.append(lead)
        found[number] = linked
    return found


def opened_contacts(engine: Engine, master_key: bytes) -> dict[str, str]:
    """The contact vault opened with the master key: pseudonym -> number, for every contact
    stored (workers who agreed to be contacted; bound to their pseudonym)."""
    if "contacts" not in inspect(engine).get_table_names():
        return {}
    crypto, opened = Crypto(master_key), {}
    contacts = _table(engine, "contacts")
    with engine.connect() as connection:
        for pseudonym, blob in connection.execute(
            select(contacts.c.pseudonym, contacts.c.ciphertext)
        ):
            try:
                opened[pseudonym] = crypto.decrypt(
                    bytes(blob), vault.PURPOSE, b"contact:" + pseudonym.encode()
                ).decode()
            except CryptoError:
                continue
    return opened


def _identifiers(number: str) -> set[str]:
    """What a pseudonym could have been computed over: the number in every form (the service
    uses E.164), and the WhatsApp address."""
    return number_forms(number) | {number}


def _request(event_id: str) -> str:
    """The request an answer came in: ``<provider>:<digest>:<index>`` without the index."""
    return event_id.rsplit(":", 1)[0] if event_id else ""


def _rows(engine: Engine) -> tuple[list[dict], list[dict], list[dict]]:
    with engine.connect() as connection:
        tables = [_table(engine, name) for name in ("answers", "workers", "migrated_pseudonyms")]
        return tuple(  # type: ignore[return-value]
            [dict(row._mapping) for row in connection.execute(select(table))] for table in tables
        )


def _table(engine: Engine, name: str) -> Table:
    return Table(name, MetaData(), autoload_with=engine)
