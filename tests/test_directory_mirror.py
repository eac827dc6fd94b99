"""The hops' cache follows the database (gateway/directory_mirror.py): a change made by the CLI
or the ORM reaches every process within five seconds, a writer never overwrites a newer state,
STOP forgets at once, and Redis that lost everything heals from the database."""

from __future__ import annotations

import base64
import dataclasses
import json
from datetime import UTC, datetime
from unittest.mock import ANY

import fakeredis
import pytest
from redis.exceptions import RedisError
from sqlalchemy import select, update

from gateway import create_app, directory_cache, directory_mirror
from gateway.cli import main
from gateway.crypto import Crypto
from gateway.directory_cache import CACHE_SECONDS, DirectoryView, number_digest
from gateway.identity import KEY_CACHE_SECONDS, KEY_PURPOSE, Identity, KeyRing, context
from gateway.queues import PERSIST
from gateway.services import Services
from store import directory
from store.models import PseudonymKey, Worker, Workplace

from .hops import (
    CALLBACK,
    CODE,
    PHONES,
    Clock,
    add_callback_workplace,
    cached,
    database_down,
    statements,
    stored_profile,
    wait_for_workers,
    walk,
    work,
)
from .leaks import dump_redis
from .support import SmsWorker, add_workplace


@pytest.fixture
def workplace(services) -> str:
    return add_callback_workplace(services)


# -- the cache follows the database ------------------------------------------------------------
def test_a_workplace_added_by_the_cli_is_known_in_another_process_within_five_seconds(
    app, migrated, queues
):
    clock = Clock()
    other = create_app(migrated)  # another web process: the same database and Redis
    elsewhere: Services = other.extensions["workervoice"]
    elsewhere.directory = DirectoryView(
        elsewhere.redis, number_digest(migrated.master_key), clock=clock
    )
    wait_for_workers(elsewhere)
    worker = SmsWorker(other.test_client(), PHONES["twilio-sms"])
    try:
        with statements(elsewhere) as seen:
            for text in ("hello", "2", "1"):
                worker.send(text)
            assert "code" in worker.send(CODE)  # no such workplace yet: asked again
            result = app.test_cli_runner().invoke(
                main,
                ["workplace", "add", "new-mill", "--name", "New Mill"]
                + ["--country", "BD", "--code", CODE],
            )
            assert result.exit_code == 0, result.output
            clock.now += CACHE_SECONDS - 0.1
            assert "code" in worker.send(CODE)  # that process's copy is not five seconds old
            clock.now += 0.1
            assert "1." in worker.send(CODE)  # enrolled: the first check-in question
        assert seen == []
        assert cached(elsewhere, worker.phone) == directory_cache.CachedProfile(
            "en", "new-mill", seed=ANY, licence="1"
        )
    finally:
        elsewhere.db.dispose()


def test_a_bulk_update_through_the_orm_reaches_the_cache(services, workplace):
    with services.db.session() as session:
        session.execute(
            update(Workplace).where(Workplace.slug == workplace).values(timezone="Asia/Kolkata")
        )
    assert services.directory.zone(workplace) == "Asia/Kolkata"


def test_a_cache_write_that_fails_after_the_commit_is_logged_not_raised(
    services, monkeypatch, caplog
):
    def broken(_changed):
        raise RedisError("down")

    monkeypatch.setattr(services.mirror, "publish", broken)
    add_workplace(services, code=CODE)  # committed all the same
    with services.db.session() as session:
        assert directory.workplace_by_slug(session, "dhaka-knit").code == CODE
    assert "workervoice cache rebuild" in caplog.text


def test_a_writer_that_read_an_older_state_never_overwrites_a_newer_one(
    services, workplace, monkeypatch
):
    """A concurrent writer bumped the generation between this one's read and its write: this
    one reads the database again instead of writing what it read."""
    real, reads = directory.directory_entries, []

    def read_then_someone_writes(session):
        reads.append(1)
        if len(reads) == 1:
            services.redis.incr(directory_cache.GENERATION_KEY)  # (on another connection)
        return real(session)

    monkeypatch.setattr(directory, "directory_entries", read_then_someone_writes)
    assert services.mirror.publish_directory() == 1
    assert len(reads) == 2


def test_a_key_change_reaches_another_processs_ring_within_five_seconds(migrated, tmp_path):
    """A rotation (here by hand, as one will be made) committed through the ORM: the ring in
    Redis changes at once, still as ciphertext, and another process sees it within five
    seconds without SQL."""
    config = dataclasses.replace(migrated, database_url=f"sqlite:///{tmp_path}/keys.sqlite3")
    writer = Services(config)
    writer.redis = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    writer.db.upgrade()
    writer.ensure_key_ring()
    reader = Services(config)
    reader.redis = writer.redis
    clock = Clock()
    ring = KeyRing(reader.mirror.key_blobs, reader.crypto, clock=clock)
    try:
        first = ring.current()
        crypto = Crypto(config.master_key)
        with writer.db.session() as session:
            old = session.get(PseudonymKey, first.id)
            old.status = "previous"
            new = PseudonymKey(status="current", secret=b"", created_at=datetime.now(UTC))
            session.add(new)
            session.flush()
            new.secret = crypto.encrypt(b"n" * 32, KEY_PURPOSE, context(new.id))
        stored = json.loads(writer.redis.get(directory_cache.KEYRING_KEY))
        assert [(kid, status) for kid, status, *_ in stored] == [
            (new.id, "current"),
            (first.id, "previous"),
        ]
        assert b"n" * 32 not in dump_redis(writer)  # only ciphertext is in Redis
        assert base64.b64decode(stored[0][2]) == new.secret
        with statements(reader) as seen:
            clock.now += KEY_CACHE_SECONDS - 0.1
            assert ring.current().id == first.id
            clock.now += 0.1
            assert ring.current().id == new.id and ring.current().secret == b"n" * 32
        assert seen == []
    finally:
        writer.db.dispose()
        reader.db.dispose()


# -- STOP, rebuilds ---------------------------------------------------------------------------
def test_stop_removes_the_cached_profile_at_once_and_a_rebuild_does_not_bring_it_back(
    app, client, services, workplace, queues
):
    phone = walk("twilio-sms", client, services)
    work(app, queues)
    SmsWorker(client, phone).send("STOP")
    assert cached(services, phone) is None  # before any job ran
    assert stored_profile(services, phone) is not None  # the database's goes with the job
    services.mirror.rebuild()
    assert cached(services, phone) is None
    work(app, queues)
    assert stored_profile(services, phone) is None


def test_a_rebuild_keeps_a_newer_profile_than_the_databases(
    app, client, services, workplace, queues
):
    phone = walk("twilio-sms", client, services)
    work(app, queues)
    worker = SmsWorker(client, phone)
    worker.send("LANG")
    worker.send("1")  # বাংলা: not stored yet
    seed = cached(services, phone).seed
    services.mirror.rebuild()
    assert cached(services, phone) == directory_cache.CachedProfile("bn", workplace, seed, "1")
    work(app, queues)
    assert stored_profile(services, phone) == ("bn", workplace)


def enrolled_then_flushed(app, client, services, queues) -> str:
    """A worker enrolled and stored; then Redis lost everything (sessions too)."""
    phone = walk("twilio-sms", client, services)
    work(app, queues)
    services.redis.flushdb()
    assert cached(services, phone) is None and not services.mirror.built()
    return phone


def recognised(client, services, phone: str) -> None:
    """The worker's next message brings the check-in, not the language menu, with no SQL."""
    services.directory.forget_memory()
    with statements(services) as seen:
        reply = SmsWorker(client, phone).send("hello")
    assert seen == [] and "1." in reply and "English" not in reply


def test_cache_rebuild_after_a_flush_restores_profiles_and_codes(
    app, client, services, workplace, queues
):
    phone = enrolled_then_flushed(app, client, services, queues)
    with services.db.session() as session:
        seed = session.scalar(select(Worker.seed))
    assert seed is not None  # drawn at enrolment, stored with the profile
    result = app.test_cli_runner().invoke(main, ["cache", "rebuild"])
    assert result.exit_code == 0, result.output
    assert "1 workplace(s), 1 profile(s) (1 were missing)" in result.output
    assert cached(services, phone) == directory_cache.CachedProfile("en", workplace, seed, "1")
    assert services.directory.slug_for_code(CODE, at=10**9) == workplace
    assert services.directory.callback_workplace(CALLBACK, at=10**9) == workplace
    recognised(client, services, phone)


def test_a_web_process_starting_after_a_flush_rebuilds(app, client, services, workplace, queues):
    phone = enrolled_then_flushed(app, client, services, queues)
    create_app(services.config).extensions["workervoice"].db.dispose()
    assert services.mirror.built()
    recognised(client, services, phone)


def test_a_hop_that_finds_no_marker_queues_one_rebuild(
    app, client, services, workplace, queues, caplog
):
    """Until the rebuild ran, a new sender is answered from what there is (the key ring is read
    back from the database: no hop can answer without it); then the enrolled worker is known."""
    phone = enrolled_then_flushed(app, client, services, queues)
    services.directory.forget_memory()
    services.identity = Identity(KeyRing(services.mirror.key_blobs, services.crypto))  # no copy
    newcomer = SmsWorker(client, "+8801711999999")
    with statements(services) as seen:
        assert "English" in newcomer.send("hello")
        services.directory.forget_memory()
        newcomer.send("2")
    assert len(seen) == 1 and "pseudonym_keys" in seen[0]
    assert "no marker" in caplog.text
    rebuilds = [job for job in queues[PERSIST].get_jobs() if job.func_name.endswith("rebuild_job")]
    assert len(rebuilds) == 1
    work(app, queues)
    assert services.mirror.built()
    recognised(client, services, phone)


def test_start_up_with_the_database_down_and_no_cache_still_starts(services, caplog):
    services.redis.flushdb()
    with database_down(services):
        directory_mirror.warm(services.mirror)
    assert "could not be checked or rebuilt" in caplog.text
    assert not services.mirror.built()


def test_db_upgrade_builds_a_missing_cache(app, services, workplace):
    services.redis.flushdb()
    result = app.test_cli_runner().invoke(main, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert services.mirror.built()
    assert services.directory.slug_for_code(CODE, at=10**9) == workplace
