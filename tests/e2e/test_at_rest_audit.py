"""The at-rest audit (issue 7, item 9; SPEC §6), through the real thing: gunicorn as the
Procfile starts it, the RQ workers under their supervisor, the clock and the CLI, all logging
to files.

After the journeys of tests/e2e/at_rest_journeys.py (every channel, provider retries, malformed
requests, a callback job that raises, replies the provider refuses, a worker SIGKILLed in the
middle of a drain, two rotations and the destruction of both old keys), the whole database (every
table and column, by reflection), every Redis key of every type (RQ's payloads decompressed and
unpickled, its failed, started, scheduled and deferred registries among them) and every line
every process logged are searched for every worker's number in every format (tests/leaks.py).
None may be there. A canary plants each format in each place and shows the search finds it.

Then an attacker holding the database, the master key and every number (tests/linkage.py)
links the current key's answers to their workers (so the attack is real), and none of the
destroyed keys' answers (those left behind by workers who moved, and those of workers who did
not come back) to anyone.
"""

from __future__ import annotations

import base64
import pickle
import shutil
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

from gateway.config import Config
from gateway.services import Services
from store import directory
from store.models import Answer, Contact, PseudonymKey

from ..conftest import USED, _clean
from ..engine.test_contact import REMIND
from ..leaks import flatten, kept, number_forms, numbers_in
from ..linkage import link, opened_contacts, stolen
from ..support import add_workplace
from . import at_rest_journeys as journeys
from .processes import (
    FakeAfricasTalking,
    Processes,
    flows_without_rotation,
    free_port,
    private_redis,
    stack_environ,
)


@dataclass
class Audited:
    world: journeys.World
    services: Services
    places: dict[str, Any]  # everything kept, by place (tests/leaks.kept)
    database: Engine  # a copy of the database as the journeys left it (tests/linkage.stolen)
    seconds: dict[str, float]  # each step's


def read_logs(directory: Path) -> dict[str, str]:
    """Every file the processes wrote in ``directory`` (their logs), and below it."""
    return {
        str(path.relative_to(directory)): path.read_bytes().decode("utf-8", "replace")
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


@contextmanager
def suite_redis(config: Config, tmp: Path) -> Iterator[str]:
    """The suite's Redis server, or a private redis-server (as tests/e2e/conftest.redis_url,
    for the whole module)."""
    if not config.embedded_redis:
        yield config.redis_url
        return
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("needs a Redis server shared by the processes: set REDIS_URL")
    with private_redis(server, tmp) as url:
        yield url


@pytest.fixture(scope="module")
def audited(tmp_path_factory, migrated) -> Iterator[Audited]:
    tmp = tmp_path_factory.mktemp("at-rest")
    with suite_redis(migrated, tmp) as redis_url:
        flows = flows_without_rotation(tmp)  # every question every time: answers to supersede
        (flows / "remind.yaml").write_text(REMIND, encoding="utf-8")  # the contact vault
        fake_at = FakeAfricasTalking()
        environ = stack_environ(
            tmp,
            flows,
            fake_at.url,
            redis_url,
            TWILIO_ACCOUNT_SID="AC" + "e" * 32,
            WORKERVOICE_TWILIO_API_URL=f"http://127.0.0.1:{free_port()}",  # nothing listens
            WORKERVOICE_SALT_GRACE_DAYS="14",
        )
        environ["DATABASE_URL"] = migrated.database_url
        services = Services(Config.from_env(environ))
        _clean(services)
        add_workplace(services, "dhaka-knit", journeys.CODE, "BD", "Asia/Dhaka")
        with services.db.session() as session:
            directory.set_workplace(session, "dhaka-knit", callback_number=journeys.CALLBACK)
        logs = tmp / "logs"
        logs.mkdir()
        processes = Processes(environ, logs)
        processes.start()
        world = journeys.World(processes, services, fake_at)
        seconds = {}
        try:
            for step in journeys.STEPS:
                started = time.monotonic()
                step(world)
                seconds[step.__name__] = round(time.monotonic() - started, 1)
        finally:
            processes.stop()
            fake_at.close()
        written = read_logs(logs) | {
            f"instance/{name}": text
            for name, text in read_logs(Path(environ["WORKERVOICE_INSTANCE_DIR"])).items()
        }
        database = stolen(services.db.engine)
        yield Audited(world, services, kept(services, written), database, seconds)
        _clean(services)  # the callback number and the answers go with this module
        services.db.dispose()


def _places(audited: Audited, prefix: str) -> dict[str, Any]:
    return {k: v for k, v in audited.places.items() if k.startswith(prefix)}


def test_no_number_is_kept_anywhere_after_every_journey(audited):
    places = audited.places
    # What was searched holds what the journeys left: the search is not of an empty store.
    answers = places["database answers"]
    for channel in ("'sms'", "'ussd'", "'voice'"):
        assert any(channel in row for row in answers), f"no {channel} answer was stored"
    assert any("'destroyed'" in row for row in places["database pseudonym_keys"])
    assert places["database contacts"], "no contact in the vault"
    failed = _places(audited, "redis b'rq:failed:")
    assert any(failed.values()), "the killed drain is not in a failed-job registry"
    jobs = _places(audited, "redis b'rq:job:")
    callbacks = [v for v in jobs.values() if b"gateway.callbacks.call_back" in flatten(v)]
    assert any(v.get(b"retries_left", b"4") != b"4" for v in callbacks), "no callback failed"
    assert places.get("redis b'wv:outbox:retry'"), "no refused reply waits to be tried again"
    logged = _places(audited, "log ")
    for name in ("gunicorn.log", "worker.log", "clock.log", "cli-salts-rotate.log"):
        assert logged.get(f"log {name}"), f"{name} is empty"
    assert "/webhooks/twilio/sms" in logged["log gunicorn.log"]  # the access log is on
    assert audited.world.killed, "no worker was killed"

    found = numbers_in(journeys.NUMBERS, places)
    assert not found, "numbers kept:\n" + "\n".join(f"{p}: {f!r} ({a})" for p, a, f in found)
    USED["e2e_at_rest"] = "gunicorn+rq-workers+clock"


CANARY = "+8801711000499"


def test_the_search_finds_a_number_in_every_form_in_each_place(services, tmp_path):
    """Each form of a number, planted alone in a table, in each type of Redis value (an RQ job's
    compressed pickle holding the number as an int among them) and in a log file, is found
    where it was planted by the same search the audit runs."""
    forms = sorted(number_forms(CANARY))
    assert {
        "+8801711000499",
        "8801711000499",
        "01711-000499",
        "01711 000499",
        "+880 1711-000499",
        "+880 1711 000499",
        "+880-1711-000499",
        "tel:+880-1711-000499",
        "whatsapp:+8801711000499",
    } <= set(forms)
    redis = services.redis
    writers = [
        lambda key, form: redis.set(key, f"x {form} y"),
        lambda key, form: redis.hset(key, "data", zlib.compress(f"({form!r},)".encode())),
        lambda key, form: redis.rpush(key, "a", form),
        lambda key, form: redis.sadd(key, form),
        lambda key, form: redis.zadd(key, {form: 1.0}),
        lambda key, form: redis.xadd(key, {"batch": form}),
    ]
    for index, form in enumerate(forms):
        writers[index % len(writers)](f"canary:{index}", form)
    results = base64.b64encode(zlib.compress(f"Traceback: {forms[0]}".encode()))
    redis.xadd("canary:results", {"exc_string": results})  # as RQ keeps a job's exception
    as_int = int(CANARY.lstrip("+"))
    redis.hset("canary:pickled", "data", zlib.compress(pickle.dumps(("job", (as_int,), {}))))
    logs = tmp_path / "logs"
    logs.mkdir()
    for index, form in enumerate(forms):
        (logs / f"canary-{index}.log").write_text(f'{{"msg": "sent to {form}"}}\n')
    for index, form in enumerate(forms):
        with services.db.session() as session:
            directory.add_brand(session, f"canary-{index}", name=form, email="a@example.org")
        found = numbers_in([CANARY], kept(services, read_logs(logs)))
        where = {(place, f) for place, _, f in found}
        assert ("database brands", form) in where, f"{form!r} not found in the database"
        assert (f"redis b'canary:{index}'", form) in where, f"{form!r} not found in Redis"
        assert (f"log canary-{index}.log", form) in where, f"{form!r} not found in a log"
        with services.db.engine.begin() as connection:
            connection.exec_driver_sql("DELETE FROM brands")
    found = numbers_in([CANARY], kept(services, {}))
    assert ("redis b'canary:results'", CANARY, forms[0]) in found
    place = "redis b'canary:pickled'"
    pickled = kept(services, {})[place]
    assert CANARY.lstrip("+").encode() not in pickled[b"data"]  # an int: in binary, not digits
    assert (place, CANARY, CANARY.lstrip("+")) in numbers_in([CANARY], {place: pickled})


def test_no_answer_of_a_destroyed_key_can_be_linked_to_a_number(audited):
    """The attacker holds the database, the master key and every number: they link the current
    key's answers to their workers, and not one answer left under the destroyed key."""
    database = audited.database
    master_key = audited.services.config.master_key
    linked = link(database, master_key, journeys.NUMBERS)
    with database.connect() as connection:
        status = dict(connection.execute(select(PseudonymKey.id, PseudonymKey.status)).all())
        rows = connection.execute(
            select(Answer.id, Answer.key_id, Answer.superseded, Answer.pseudonym)
        ).all()
    destroyed = {kid for kid, state in status.items() if state == "destroyed"}
    current = next(kid for kid, state in status.items() if state == "current")
    keys = audited.world.keys
    assert {keys["first"], keys["second"]} <= destroyed and keys["third"] == current
    left = {r.id for r in rows if r.key_id in destroyed}
    assert left, "no answer is left under the destroyed key: nothing to try to link"
    assert any(r.superseded for r in rows if r.id in left), "no superseded answer was left"
    assert len({r.pseudonym for r in rows if r.id in left}) >= 3  # several workers' answers

    for number, found in linked.items():
        assert not set(found.answers) & left, (
            f"{number}'s answers under the destroyed key are linked to it: "
            + repr({a: found.pseudonyms[p] for a, p in found.answers.items() if a in left})
        )
    # The control: the same attack links every answer under the current key, to one number.
    now = {r.id for r in rows if r.key_id == current}
    owners = {a: n for n, found in linked.items() for a in found.answers}
    assert now and now <= set(owners), "answers under the current key the attacker missed"
    for number in audited.world.answered_last:
        assert set(linked[number].answers) & now, f"{number}'s answers were not linked"
    # The vault opens with the master key, by design: only the current key's contacts are left.
    with database.connect() as connection:
        vaulted = dict(connection.execute(select(Contact.pseudonym, Contact.key_id)).all())
    assert set(opened_contacts(database, master_key).values()) == {journeys.LATE}
    assert set(vaulted.values()) == {current}
    USED["e2e_linkage"] = f"{len(left)} destroyed-key answers unlinked, {len(now)} linked"
